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
  switch (recorded->kind) {
    case BeginDeathResult::Kind::kStarted:
      deaths_.Add({{"result", "accepted"}}).Increment();
      committed_();
      return std::move(recorded->recorded);
    case BeginDeathResult::Kind::kAlreadyRecorded: {
      deaths_.Add({{"result", "replayed"}}).Increment();
      v1::RecordDeathResponse replay = std::move(recorded->recorded);
      replay.set_replayed(true);
      return replay;
    }
    case BeginDeathResult::Kind::kInProgress:
      // Only a synchronous workflow left pending before a switch to async can be in progress.
      deaths_.Add({{"result", "in_progress"}}).Increment();
      return absl::AbortedError(
          absl::StrCat("the death of patient \"", request.patient_id,
                       "\" is being recorded by another request; retry shortly"));
    case BeginDeathResult::Kind::kCompensationPending:
      deaths_.Add({{"result", "in_progress"}}).Increment();
      return absl::UnavailableError(absl::StrCat(
          "an earlier attempt to record the death of patient \"", request.patient_id,
          "\" is still being undone in the morgue or appointments service; retry later"));
  }
  return absl::InternalError("unknown death recording outcome");
}

}  // namespace patients
