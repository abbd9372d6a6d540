#include "integration/local_death_workflow.h"

#include <utility>

#include "base/status.h"

namespace integration {

LocalDeathWorkflow::LocalDeathWorkflow(patients::PatientsRepository& repository, base::Clock& clock,
                                       prometheus::Registry& metrics, DeathDelivery delivery,
                                       std::function<void()> committed)
    : repository_(repository),
      clock_(clock),
      deaths_(prometheus::BuildCounter()
                  .Name("hospital_deaths_recorded_total")
                  .Help("RecordDeath results: accepted (committed with its event; the other "
                        "services act when it reaches them), replayed (already recorded), "
                        "in_progress, error.")
                  .Register(metrics)),
      delivery_(delivery),
      committed_(std::move(committed)) {}

absl::StatusOr<patients::v1::RecordDeathResponse> LocalDeathWorkflow::RecordDeath(
    const patients::DeathRequest& request, absl::Time /*parent_deadline*/) {
  ASSIGN_OR_RETURN(patients::CommittedDeath committed,
                   patients::CommitDeath(repository_, request,
                                         /*with_event=*/delivery_ == DeathDelivery::kOutbox,
                                         clock_.Now(), deaths_));
  if (committed.new_death) {
    deaths_.Add({{"result", "accepted"}}).Increment();
    committed_();
  }
  return std::move(committed.response);
}

}  // namespace integration
