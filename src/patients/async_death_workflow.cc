#include "patients/async_death_workflow.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server_kit/rpc_support.h"

namespace patients {

AsynchronousDeathWorkflow::AsynchronousDeathWorkflow(PatientsRepository& repository,
                                                     base::Clock& clock,
                                                     prometheus::Registry& metrics,
                                                     std::function<void()> committed,
                                                     DeathDelivery delivery)
    : repository_(repository),
      clock_(clock),
      deaths_(prometheus::BuildCounter()
                  .Name("hospital_deaths_recorded_total")
                  .Help("RecordDeath results: accepted (committed with its event; the other "
                        "services act when it reaches them), replayed (already recorded), "
                        "in_progress, error.")
                  .Register(metrics)),
      committed_(std::move(committed)),
      delivery_(delivery) {}

absl::StatusOr<v1::RecordDeathResponse> AsynchronousDeathWorkflow::RecordDeath(
    const DeathRequest& request, absl::Time /*parent_deadline*/) {
  absl::StatusOr<BeginDeathResult> recorded = repository_.RecordDeathWithEvent(
      request.patient_id, server_kit::NewId(), request.time_of_death, request.cause, clock_.Now(),
      /*with_event=*/delivery_ == DeathDelivery::kOutbox);
  if (!recorded.ok()) {
    deaths_.Add({{"result", "error"}}).Increment();
    return recorded.status();
  }
  // Only a synchronous workflow left pending before a switch of mode can be in progress.
  if (recorded->kind != BeginDeathResult::Kind::kStarted) {
    return AnswerStandingDeath(*recorded, request.patient_id, deaths_);
  }
  deaths_.Add({{"result", "accepted"}}).Increment();
  committed_();
  return std::move(recorded->recorded);
}

}  // namespace patients
