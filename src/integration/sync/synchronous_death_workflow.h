// The synchronous pattern (--death_workflow=sync): SynchronousDeathWorkflow calls the morgue and
// the appointments service over gRPC, through the resilience library, while the caller waits,
// and undoes its work like a saga when one fails. Its background pass runs in every pattern: it
// finishes what synchronous deaths left (owed undo calls and confirmations, workflows a crash
// left pending), so that a switch to another pattern strands nothing.
//
// Several replicas may share the database: each workflow is driven by the one process whose
// claim on it is valid (patients_repository.h, WorkflowClaim). A request claims the workflow it
// starts; the background pass takes up an owed call or an orphaned workflow only once it has
// claimed it, and another replica's claim is left alone until it lapses.
//
// The synchronous saga, step by step:
//   0. If a downstream's circuit breaker is open, the call fails at once with UNAVAILABLE
//      naming it, and nothing changes anywhere.
//   1. One local transaction marks the patient DECEASED and records a PENDING workflow with a
//      fresh workflow id (a partial unique index allows one pending-or-completed death per
//      patient, so concurrent requests cannot both start).
//   2. The morgue admission and the appointments cancellation are sent concurrently through the
//      resilience library, with the workflow id as idempotency key; the call takes as long as
//      the slower of the two.
//   3. Both succeed: the workflow is COMPLETED and its response stored, so that a repeated
//      RecordDeath returns the original result. The morgue's admission was provisional (the
//      body cannot be released while the workflow may still be undone); the same transaction
//      records its confirmation as owed, and ConfirmAdmission is sent before the caller is
//      answered (and retried in the background until the morgue acknowledges it).
//   4. Either fails: one transaction makes the patient ALIVE again, marks the workflow
//      COMPENSATING and records both undo calls as owed (both, because a call that failed may
//      still have been applied, or may arrive late; the downstream undo operations are
//      idempotent and remember undone workflows). The undo calls are tried at once within the
//      caller's deadline, then retried in the background with backoff until they succeed.
//      The caller gets UNAVAILABLE naming the service that failed.
//   5. A PENDING workflow left by a crashed process is rolled forward in the background: the
//      same idempotent calls are sent again, then step 3 or 4 follows.
#ifndef HOSPITAL_SRC_INTEGRATION_SYNC_SYNCHRONOUS_DEATH_WORKFLOW_H_
#define HOSPITAL_SRC_INTEGRATION_SYNC_SYNCHRONOUS_DEATH_WORKFLOW_H_

#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "base/periodic_thread.h"
#include "base/sync.h"
#include "hospital/patients/v1/patients.pb.h"
#include "integration/sync/downstreams.h"
#include "patients/death_workflow.h"
#include "patients/patients_repository.h"
#include "resilience/backoff.h"

namespace integration::sync {

namespace v1 = hospital::patients::v1;
using patients::BeginDeathResult;
using patients::CompensationAction;
using patients::DeathRequest;
using patients::DeathWorkflowRow;
using patients::DueCompensation;
using patients::DueConfirmation;
using patients::PatientsRepository;

struct SynchronousDeathWorkflowOptions {
  // How often the background pass runs.
  absl::Duration reconcile_interval = absl::Seconds(1);
  // The background pass works on this many workflows at once, and gives each call at most
  // recovery_deadline (the policy's own timeout may be shorter): a stalled downstream delays
  // the other recoveries by no more than that.
  int recovery_parallelism = 16;
  absl::Duration recovery_deadline = absl::Seconds(10);
  // Backoff of a failed undo call or confirmation (full jitter, as the resilience library's
  // retries).
  resilience::BackoffConfig compensation_backoff = {absl::Milliseconds(500), absl::Seconds(30),
                                                    2.0};
  // This process, as the owner of the workflows it drives (WorkflowClaim); empty: a fresh id.
  // Unique among the processes running at once. Stable across restarts (--replica_name), it
  // lets a restarted replica take up at once what its predecessor left, since no request of
  // its own drives it; a fresh id waits for those claims to lapse.
  std::string owner;
  // A request claims its workflow until its deadline, at most request_claim from its start,
  // and the background pass claims a workflow for recovery_deadline; both plus claim_margin
  // (for clocks that disagree and for recording the outcome). A workflow whose owner died is
  // taken over once the claim has lapsed.
  absl::Duration request_claim = absl::Seconds(60);
  absl::Duration claim_margin = absl::Seconds(5);
};

class SynchronousDeathWorkflow final : public patients::DeathWorkflow {
 public:
  // Everything passed in must outlive this object.
  SynchronousDeathWorkflow(PatientsRepository& repository, Downstreams& downstreams,
                           base::Environment environment, prometheus::Registry& metrics,
                           SynchronousDeathWorkflowOptions options = {});
  ~SynchronousDeathWorkflow() override;

  absl::StatusOr<v1::RecordDeathResponse> RecordDeath(const DeathRequest& request,
                                                      absl::Time parent_deadline) override;

  // One background pass: retries due undo calls and confirmations and rolls forward orphaned
  // workflows, each
  // only once claimed (a workflow a request is driving is left to it), several at once.
  void ReconcileOnce();
  // Runs ReconcileOnce every reconcile_interval on a thread of its own, until Stop.
  void StartBackground();
  void Stop();

 private:
  struct Outcome;
  // Sends both forward calls and waits for them.
  Outcome CallDownstreams(const std::string& workflow_id, const DeathRequest& request,
                          absl::Time parent_deadline);
  // Steps 3 and 4 for a workflow whose forward calls have returned.
  absl::StatusOr<v1::RecordDeathResponse> Conclude(const std::string& workflow_id,
                                                   const DeathRequest& request,
                                                   const v1::Patient& patient,
                                                   const Outcome& outcome,
                                                   absl::Time parent_deadline);
  // Sends the owed undo calls concurrently, waits, and records each result.
  void Compensate(const std::string& workflow_id, const std::string& patient_id,
                  const std::vector<DueCompensation>& owed, absl::Time parent_deadline);
  // Sends one owed ConfirmAdmission, waits, and records the result.
  void Confirm(const DueConfirmation& owed, absl::Time deadline);
  // Rolls forward a claimed PENDING workflow left by a process that died.
  void RollForward(const DeathWorkflowRow& orphan, absl::Time deadline);
  bool MarkInFlight(const std::string& workflow_id);
  void ClearInFlight(const std::string& workflow_id);
  // For the background pass: marks the workflow in flight and claims it in the database; false
  // (and nothing marked) if a request here drives it or another replica's claim is valid.
  bool TakeForRecovery(const std::string& workflow_id, absl::Time now);

  PatientsRepository& repository_;
  Downstreams& downstreams_;
  const base::Environment environment_;
  const SynchronousDeathWorkflowOptions options_;
  const std::string owner_;
  prometheus::Family<prometheus::Counter>& deaths_;
  prometheus::Family<prometheus::Counter>& compensations_;
  prometheus::Gauge& compensations_pending_;
  prometheus::Family<prometheus::Counter>& confirmations_;
  prometheus::Gauge& confirmations_pending_;
  prometheus::Counter& rolled_forward_;

  base::Mutex mutex_;
  // Workflows a request or the background pass of this process is driving now; the background
  // pass leaves them alone (their claim in the database is this process's, so it alone cannot
  // tell).
  std::set<std::string> in_flight_ ABSL_GUARDED_BY(mutex_);
  std::optional<base::PeriodicThread> background_;
};

}  // namespace integration::sync

#endif  // HOSPITAL_SRC_INTEGRATION_SYNC_SYNCHRONOUS_DEATH_WORKFLOW_H_
