#include "integration/direct_db_write/direct_write_death_workflow.h"

#include <utility>

#include "base/status.h"

namespace integration::direct_db_write {

DirectWriteDeathWorkflow::DirectWriteDeathWorkflow(patients::PatientsRepository& repository,
                                                   shared_db_batch::BatchSync& copy,
                                                   base::Clock& clock,
                                                   prometheus::Registry& metrics)
    : repository_(repository),
      clock_(clock),
      deaths_(prometheus::BuildCounter()
                  .Name("hospital_deaths_recorded_total")
                  .Help("RecordDeath results: applied (written into both other databases before "
                        "the answer), accepted (committed here; the other databases catch up), "
                        "replayed, in_progress, error.")
                  .Register(metrics)),
      copy_(copy) {}

DirectWriteDeathWorkflow::~DirectWriteDeathWorkflow() { Stop(); }

void DirectWriteDeathWorkflow::StartBackground(absl::Duration interval) {
  background_.emplace(interval, [this] { (void)Copy(); });
}

void DirectWriteDeathWorkflow::Stop() {
  if (background_) background_->Stop();
}

absl::Status DirectWriteDeathWorkflow::Copy() {
  base::MutexLock lock(&mutex_);
  // A pass started before this call may have read the deaths before the caller's commit; the
  // next one to start cannot have.
  const std::int64_t covering = started_ + 1;
  while (ended_ < covering) {
    if (running_) {
      pass_ended_.Wait(&mutex_);
      continue;
    }
    running_ = true;
    const std::int64_t pass = ++started_;
    absl::Status result;
    mutex_.Unlock();
    result = copy_.RunOnce();
    mutex_.Lock();
    running_ = false;
    ended_ = pass;
    last_result_ = std::move(result);
    pass_ended_.SignalAll();
  }
  // The result of the covering pass or of a later one (which covers the call too).
  return last_result_;
}

absl::StatusOr<patients::v1::RecordDeathResponse> DirectWriteDeathWorkflow::RecordDeath(
    const patients::DeathRequest& request, absl::Time /*parent_deadline*/) {
  ASSIGN_OR_RETURN(
      patients::CommittedDeath committed,
      patients::CommitDeath(repository_, request, /*with_event=*/false, clock_.Now(), deaths_));
  if (!committed.new_death) return std::move(committed.response);
  patients::v1::RecordDeathResponse response = std::move(committed.response);
  // The pass copies every death committed so far, this one included; if it fails, this death
  // is committed here and the background pass finishes the copy.
  if (Copy().ok()) {
    response.set_downstream_state(patients::v1::DOWNSTREAM_APPLIED);
    deaths_.Add({{"result", "applied"}}).Increment();
  } else {
    deaths_.Add({{"result", "accepted"}}).Increment();
  }
  return response;
}

}  // namespace integration::direct_db_write
