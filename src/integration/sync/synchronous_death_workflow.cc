#include "integration/sync/synchronous_death_workflow.h"

#include <algorithm>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "resilience/backoff.h"
#include "server_kit/log.h"
#include "server_kit/rpc_support.h"
#include "server_kit/serve.h"

namespace integration::sync {

using patients::CompensationActionName;
using server_kit::Log;
using server_kit::LogLevel;

// Results of the two forward calls.
struct SynchronousDeathWorkflow::Outcome {
  absl::Status morgue_status;
  morgue_v1::AdmitDeceasedResponse admission;
  absl::Status appointments_status;
  appointments_v1::CancelPatientAppointmentsResponse cancellation;

  bool ok() const { return morgue_status.ok() && appointments_status.ok(); }
  // "morgue (UNAVAILABLE: ...)" for each failed service.
  std::string Failures() const {
    std::vector<std::string> failures;
    if (!morgue_status.ok()) {
      failures.push_back(absl::StrCat("morgue (", morgue_status.ToString(), ")"));
    }
    if (!appointments_status.ok()) {
      failures.push_back(absl::StrCat("appointments (", appointments_status.ToString(), ")"));
    }
    return absl::StrJoin(failures, ", ");
  }
};

namespace {

// Waits for a fixed number of callbacks.
class Join {
 public:
  explicit Join(int expected) : remaining_(expected) {}
  void Done() {
    base::MutexLock lock(&mutex_);
    if (--remaining_ == 0) all_done_.SignalAll();
  }
  void Wait() {
    base::MutexLock lock(&mutex_);
    while (remaining_ > 0) all_done_.Wait(&mutex_);
  }

 private:
  base::Mutex mutex_;
  base::CondVar all_done_;
  int remaining_ ABSL_GUARDED_BY(mutex_);
};

constexpr char kDeathReason[] = "patient deceased";

}  // namespace

SynchronousDeathWorkflow::SynchronousDeathWorkflow(PatientsRepository& repository,
                                                   Downstreams& downstreams,
                                                   base::Environment environment,
                                                   prometheus::Registry& metrics,
                                                   SynchronousDeathWorkflowOptions options)
    : repository_(repository),
      downstreams_(downstreams),
      environment_(environment),
      options_(options),
      owner_(options.owner.empty() ? server_kit::NewId() : options.owner),
      deaths_(prometheus::BuildCounter()
                  .Name("hospital_deaths_recorded_total")
                  .Help("RecordDeath results: completed, replayed (already recorded), "
                        "in_progress, compensated (a downstream failed), rejected_fast (a "
                        "downstream's breaker was open), error.")
                  .Register(metrics)),
      compensations_(prometheus::BuildCounter()
                         .Name("hospital_death_compensations_total")
                         .Help("Undo calls of failed death workflows, by action and result "
                               "(done, retry, impossible).")
                         .Register(metrics)),
      compensations_pending_(prometheus::BuildGauge()
                                 .Name("hospital_death_compensations_pending")
                                 .Help("Undo calls owed to downstream services.")
                                 .Register(metrics)
                                 .Add({})),
      confirmations_(prometheus::BuildCounter()
                         .Name("hospital_admission_confirmations_total")
                         .Help("Confirmations of completed deaths' provisional morgue admissions, "
                               "by result (done, retry, impossible).")
                         .Register(metrics)),
      confirmations_pending_(prometheus::BuildGauge()
                                 .Name("hospital_admission_confirmations_pending")
                                 .Help("Confirmations owed to the morgue by completed deaths.")
                                 .Register(metrics)
                                 .Add({})),
      rolled_forward_(prometheus::BuildCounter()
                          .Name("hospital_death_workflows_rolled_forward_total")
                          .Help("Pending death workflows resumed by the background pass.")
                          .Register(metrics)
                          .Add({})) {}

SynchronousDeathWorkflow::~SynchronousDeathWorkflow() { Stop(); }

bool SynchronousDeathWorkflow::MarkInFlight(const std::string& workflow_id) {
  base::MutexLock lock(&mutex_);
  return in_flight_.insert(workflow_id).second;
}

void SynchronousDeathWorkflow::ClearInFlight(const std::string& workflow_id) {
  base::MutexLock lock(&mutex_);
  in_flight_.erase(workflow_id);
}

bool SynchronousDeathWorkflow::TakeForRecovery(const std::string& workflow_id, absl::Time now) {
  if (!MarkInFlight(workflow_id)) return false;
  const patients::WorkflowClaim claim{owner_,
                                      now + options_.recovery_deadline + options_.claim_margin};
  absl::StatusOr<bool> claimed = repository_.ClaimWorkflow(workflow_id, claim, now);
  if (claimed.ok() && *claimed) return true;
  if (!claimed.ok()) {
    Log(LogLevel::kError, "workflow_claim_failed",
        {{"workflow_id", workflow_id}, {"error", claimed.status().ToString()}});
  }
  ClearInFlight(workflow_id);
  return false;
}

absl::StatusOr<v1::RecordDeathResponse> SynchronousDeathWorkflow::RecordDeath(
    const DeathRequest& request, absl::Time parent_deadline) {
  // A downstream whose breaker is open would fail the workflow anyway, after the local
  // transaction, the other call and the undo calls: fail now, having changed nothing.
  if (const std::string rejecting = downstreams_.RejectingTarget(); !rejecting.empty()) {
    deaths_.Add({{"result", "rejected_fast"}}).Increment();
    return server_kit::WithErrorReason(
        absl::UnavailableError(absl::StrCat(
            "could not record the death of patient \"", request.patient_id, "\": ", rejecting,
            " is unavailable (circuit breaker open); nothing was changed, retry later")),
        server_kit::kReasonCircuitOpen);
  }
  const std::string workflow_id = server_kit::NewId();
  // Marked before the workflow exists, so the background pass never sees it unowned.
  MarkInFlight(workflow_id);
  const absl::Time now = environment_.clock->Now();
  const patients::WorkflowClaim claim{
      owner_, std::min(parent_deadline, now + options_.request_claim) + options_.claim_margin};
  absl::StatusOr<BeginDeathResult> begun = repository_.BeginDeath(
      request.patient_id, workflow_id, request.time_of_death, request.cause, now, claim);
  absl::StatusOr<v1::RecordDeathResponse> result;
  if (!begun.ok()) {
    result = begun.status();
  } else {
    if (begun->kind == BeginDeathResult::Kind::kStarted) {
      const Outcome outcome = CallDownstreams(workflow_id, request, parent_deadline);
      result = Conclude(workflow_id, request, begun->patient, outcome, parent_deadline);
    } else {
      result = AnswerStandingDeath(*begun, request.patient_id, deaths_);
    }
  }
  ClearInFlight(workflow_id);
  return result;
}

SynchronousDeathWorkflow::Outcome SynchronousDeathWorkflow::CallDownstreams(
    const std::string& workflow_id, const DeathRequest& request, absl::Time parent_deadline) {
  auto outcome = std::make_shared<Outcome>();
  auto join = std::make_shared<Join>(2);
  morgue_v1::AdmitDeceasedRequest admit;
  admit.set_patient_id(request.patient_id);
  admit.set_workflow_id(workflow_id);
  *admit.mutable_time_of_death() = server_kit::ToProtoTime(request.time_of_death);
  admit.set_cause(request.cause);
  appointments_v1::CancelPatientAppointmentsRequest cancel;
  cancel.set_patient_id(request.patient_id);
  cancel.set_workflow_id(workflow_id);
  cancel.set_reason(kDeathReason);
  cancel.set_patient_deceased(true);
  // Both in flight at once: the death takes as long as the slower call, not the sum.
  downstreams_.AdmitDeceased(
      admit, parent_deadline,
      [outcome, join](const absl::Status& status, const morgue_v1::AdmitDeceasedResponse& reply) {
        outcome->morgue_status = status;
        if (status.ok()) outcome->admission = reply;
        join->Done();
      });
  downstreams_.CancelPatientAppointments(
      cancel, parent_deadline,
      [outcome, join](const absl::Status& status,
                      const appointments_v1::CancelPatientAppointmentsResponse& reply) {
        outcome->appointments_status = status;
        if (status.ok()) outcome->cancellation = reply;
        join->Done();
      });
  join->Wait();
  return *outcome;
}

absl::StatusOr<v1::RecordDeathResponse> SynchronousDeathWorkflow::Conclude(
    const std::string& workflow_id, const DeathRequest& request, const v1::Patient& patient,
    const Outcome& outcome, absl::Time parent_deadline) {
  if (outcome.ok()) {
    v1::RecordDeathResponse response;
    *response.mutable_patient() = patient;
    response.mutable_morgue()->set_admission_id(outcome.admission.admission().admission_id());
    *response.mutable_morgue()->mutable_admit_time() = outcome.admission.admission().admit_time();
    for (const auto& appointment : outcome.cancellation.cancelled()) {
      v1::CancelledAppointment* cancelled = response.add_cancelled_appointments();
      cancelled->set_appointment_id(appointment.appointment_id());
      *cancelled->mutable_scheduled_time() = appointment.scheduled_time();
    }
    response.set_workflow_id(workflow_id);
    response.set_downstream_state(v1::DOWNSTREAM_APPLIED);
    if (absl::Status stored =
            repository_.CompleteDeath(workflow_id, response, environment_.clock->Now());
        !stored.ok()) {
      // Both services have it; the background pass will store the result by rolling forward.
      deaths_.Add({{"result", "error"}}).Increment();
      Log(LogLevel::kError, "death_result_not_stored",
          {{"workflow_id", workflow_id}, {"error", stored.ToString()}});
      return absl::UnavailableError(
          absl::StrCat("the death of patient \"", request.patient_id,
                       "\" reached every service but could not be stored here (", stored.message(),
                       "); it will complete in the background, retry to read the result"));
    }
    deaths_.Add({{"result", "completed"}}).Increment();
    // Waited for, so that a body can be released as soon as RecordDeath has answered; if the
    // morgue does not acknowledge it now, the background pass keeps trying, and the death is
    // recorded either way.
    Confirm({workflow_id, request.patient_id, 0}, parent_deadline);
    return response;
  }

  const std::string failures = outcome.Failures();
  Log(LogLevel::kWarning, "death_compensating",
      {{"workflow_id", workflow_id}, {"patient_id", request.patient_id}, {"failed", failures}});
  if (absl::Status begun =
          repository_.BeginCompensation(workflow_id, failures, environment_.clock->Now());
      !begun.ok()) {
    // Still PENDING: the background pass will send the calls again and complete the death if
    // they succeed, or undo it if not. Say exactly that: nothing is settled yet.
    deaths_.Add({{"result", "error"}}).Increment();
    return absl::UnavailableError(absl::StrCat(
        "could not record the death of patient \"", request.patient_id, "\": ", failures,
        "; its outcome could not be stored here (", begun.message(),
        "), so it will be settled in the background: completed if the services answer, undone "
        "if not; call RecordDeath again to learn which"));
  }
  Compensate(workflow_id, request.patient_id,
             {{workflow_id, request.patient_id, CompensationAction::kCancelAdmission, 0},
              {workflow_id, request.patient_id, CompensationAction::kRestoreAppointments, 0}},
             parent_deadline);
  deaths_.Add({{"result", "compensated"}}).Increment();
  return absl::UnavailableError(absl::StrCat("could not record the death of patient \"",
                                             request.patient_id, "\": ", failures,
                                             "; the patient was left alive, retry later"));
}

void SynchronousDeathWorkflow::Compensate(const std::string& workflow_id,
                                          const std::string& patient_id,
                                          const std::vector<DueCompensation>& owed,
                                          absl::Time parent_deadline) {
  auto statuses = std::make_shared<std::vector<absl::Status>>(owed.size());
  auto join = std::make_shared<Join>(static_cast<int>(owed.size()));
  for (std::size_t i = 0; i < owed.size(); ++i) {
    auto done = [statuses, join, i](const absl::Status& status, const auto&) {
      (*statuses)[i] = status;
      join->Done();
    };
    if (owed[i].action == CompensationAction::kCancelAdmission) {
      morgue_v1::CancelAdmissionRequest cancel;
      cancel.set_patient_id(patient_id);
      cancel.set_workflow_id(workflow_id);
      downstreams_.CancelAdmission(cancel, parent_deadline, done);
    } else {
      appointments_v1::RestorePatientAppointmentsRequest restore;
      restore.set_patient_id(patient_id);
      restore.set_workflow_id(workflow_id);
      downstreams_.RestorePatientAppointments(restore, parent_deadline, done);
    }
  }
  join->Wait();
  for (std::size_t i = 0; i < owed.size(); ++i) {
    const absl::Status& status = (*statuses)[i];
    const CompensationAction action = owed[i].action;
    const std::string action_name = CompensationActionName(action);
    const absl::Time now = environment_.clock->Now();
    absl::Status recorded;
    if (status.ok() || absl::IsFailedPrecondition(status) || absl::IsInvalidArgument(status)) {
      if (!status.ok()) {
        // Cannot be undone (say, the body was released meanwhile): retrying will not help.
        compensations_.Add({{"action", action_name}, {"result", "impossible"}}).Increment();
        Log(LogLevel::kError, "compensation_impossible",
            {{"workflow_id", workflow_id},
             {"action", action_name},
             {"error", std::string(status.message())}});
      } else {
        compensations_.Add({{"action", action_name}, {"result", "done"}}).Increment();
      }
      recorded = repository_.CompensationDone(workflow_id, action, now);
    } else {
      compensations_.Add({{"action", action_name}, {"result", "retry"}}).Increment();
      const absl::Duration backoff = resilience::FullJitterBackoff(
          options_.compensation_backoff, owed[i].attempts + 1, *environment_.random);
      recorded =
          repository_.CompensationFailed(workflow_id, action, status.ToString(), now + backoff);
    }
    if (!recorded.ok()) {
      // The owed call stays due in the database and is tried again on the next pass.
      Log(LogLevel::kError, "compensation_not_recorded",
          {{"workflow_id", workflow_id}, {"error", recorded.ToString()}});
    }
  }
}

void SynchronousDeathWorkflow::Confirm(const DueConfirmation& owed, absl::Time deadline) {
  morgue_v1::ConfirmAdmissionRequest confirm;
  confirm.set_patient_id(owed.patient_id);
  confirm.set_workflow_id(owed.workflow_id);
  auto result = std::make_shared<absl::Status>();
  auto join = std::make_shared<Join>(1);
  downstreams_.ConfirmAdmission(
      confirm, deadline,
      [result, join](const absl::Status& status, const morgue_v1::ConfirmAdmissionResponse&) {
        *result = status;
        join->Done();
      });
  join->Wait();
  const absl::Time now = environment_.clock->Now();
  absl::Status recorded;
  if (result->ok() || absl::IsFailedPrecondition(*result) || absl::IsNotFound(*result) ||
      absl::IsInvalidArgument(*result)) {
    if (!result->ok()) {
      // The morgue has no admission of this workflow to confirm (say, its database was
      // restored from a backup): retrying will not help, and a person must look.
      confirmations_.Add({{"result", "impossible"}}).Increment();
      Log(LogLevel::kError, "admission_confirmation_impossible",
          {{"workflow_id", owed.workflow_id},
           {"patient_id", owed.patient_id},
           {"error", result->ToString()}});
    } else {
      confirmations_.Add({{"result", "done"}}).Increment();
    }
    recorded = repository_.ConfirmationDone(owed.workflow_id, now);
  } else {
    confirmations_.Add({{"result", "retry"}}).Increment();
    const absl::Duration backoff = resilience::FullJitterBackoff(
        options_.compensation_backoff, owed.attempts + 1, *environment_.random);
    recorded = repository_.ConfirmationFailed(owed.workflow_id, result->ToString(), now + backoff);
  }
  if (!recorded.ok()) {
    // Still due in the database: the next pass sends it again (the morgue's confirm is
    // idempotent).
    Log(LogLevel::kError, "admission_confirmation_not_recorded",
        {{"workflow_id", owed.workflow_id}, {"error", recorded.ToString()}});
  }
}

namespace {

// Runs `work` on every item, at most `parallelism` at a time, each on a thread of its own, and
// returns when all are done. (The work blocks on calls to other services; a pass that took them
// one at a time would let one stalled service hold up every other recovery.)
template <typename Item, typename Work>
void ForEachInParallel(const std::vector<Item>& items, int parallelism, const Work& work) {
  const std::size_t batch = static_cast<std::size_t>(std::max(1, parallelism));
  for (std::size_t start = 0; start < items.size(); start += batch) {
    std::vector<std::thread> threads;
    for (std::size_t i = start; i < std::min(items.size(), start + batch); ++i) {
      threads.emplace_back([&work, &item = items[i]] { work(item); });
    }
    for (std::thread& thread : threads) thread.join();
  }
}

}  // namespace

void SynchronousDeathWorkflow::ReconcileOnce() {
  const absl::Time now = environment_.clock->Now();
  const absl::Time deadline = now + options_.recovery_deadline;
  absl::StatusOr<std::vector<DueCompensation>> due = repository_.DueCompensations(now, 100);
  if (due.ok()) {
    std::map<std::string, std::vector<DueCompensation>> by_workflow;
    for (DueCompensation& owed : *due) by_workflow[owed.workflow_id].push_back(std::move(owed));
    // A request that is undoing its own workflow right now owns those calls.
    std::vector<std::vector<DueCompensation>> claimed;
    for (auto& [workflow_id, owed] : by_workflow) {
      if (TakeForRecovery(workflow_id, now)) claimed.push_back(std::move(owed));
    }
    ForEachInParallel(
        claimed, options_.recovery_parallelism, [&](const std::vector<DueCompensation>& owed) {
          Compensate(owed.front().workflow_id, owed.front().patient_id, owed, deadline);
          ClearInFlight(owed.front().workflow_id);
        });
  } else {
    Log(LogLevel::kError, "reconcile_failed", {{"error", due.status().ToString()}});
  }

  // Confirmations a request could not deliver, or that a crash interrupted.
  if (absl::StatusOr<std::vector<DueConfirmation>> confirmations =
          repository_.DueConfirmations(now, 100);
      confirmations.ok()) {
    std::vector<DueConfirmation> claimed;
    for (DueConfirmation& owed : *confirmations) {
      if (TakeForRecovery(owed.workflow_id, now)) claimed.push_back(std::move(owed));
    }
    ForEachInParallel(claimed, options_.recovery_parallelism, [&](const DueConfirmation& owed) {
      Confirm(owed, deadline);
      ClearInFlight(owed.workflow_id);
    });
  } else {
    Log(LogLevel::kError, "reconcile_failed", {{"error", confirmations.status().ToString()}});
  }

  // A PENDING workflow that no live request drives (here: not in flight; elsewhere: its claim
  // lapsed) belongs to a process that died.
  absl::StatusOr<std::vector<DeathWorkflowRow>> orphans = repository_.PendingWorkflows(now);
  if (orphans.ok()) {
    std::vector<DeathWorkflowRow> claimed;
    for (DeathWorkflowRow& orphan : *orphans) {
      if (TakeForRecovery(orphan.workflow_id, now)) claimed.push_back(std::move(orphan));
    }
    ForEachInParallel(claimed, options_.recovery_parallelism,
                      [&](const DeathWorkflowRow& orphan) { RollForward(orphan, deadline); });
  }

  if (absl::StatusOr<int> pending = repository_.PendingCompensationCount(); pending.ok()) {
    compensations_pending_.Set(*pending);
  }
  if (absl::StatusOr<int> pending = repository_.PendingConfirmationCount(); pending.ok()) {
    confirmations_pending_.Set(*pending);
  }
}

void SynchronousDeathWorkflow::RollForward(const DeathWorkflowRow& orphan, absl::Time deadline) {
  // Claimed now, but the snapshot that listed it may predate a request completing it.
  if (absl::StatusOr<bool> pending = repository_.IsPending(orphan.workflow_id);
      pending.ok() && *pending) {
    rolled_forward_.Increment();
    Log(LogLevel::kInfo, "death_rolling_forward", {{"workflow_id", orphan.workflow_id}});
    const DeathRequest request{orphan.patient_id, orphan.time_of_death, orphan.cause};
    if (absl::StatusOr<v1::Patient> patient = repository_.Get(orphan.patient_id); patient.ok()) {
      const Outcome outcome = CallDownstreams(orphan.workflow_id, request, deadline);
      Conclude(orphan.workflow_id, request, *patient, outcome, deadline).IgnoreError();
    }
  }
  ClearInFlight(orphan.workflow_id);
}

void SynchronousDeathWorkflow::StartBackground() {
  background_.emplace(options_.reconcile_interval, [this] { ReconcileOnce(); });
}

void SynchronousDeathWorkflow::Stop() {
  if (background_) background_->Stop();
}

}  // namespace integration::sync
