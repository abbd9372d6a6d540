// The death workflow of the patterns that answer once the death is committed in the patients
// database (async, file_drop, shared_db_batch): RecordDeath commits it (patients::CommitDeath)
// and answers at once, DOWNSTREAM_PENDING. How the others learn of it is the pattern's:
//   - DeathDelivery::kOutbox (async, file_drop): a PatientDied event is committed with the death
//     (the transactional outbox, messaging/outbox.h); the outbox relay publishes it, to NATS
//     JetStream (async) or as a file in a shared directory (file_drop), and the morgue and the
//     appointments service apply it from their own consumers.
//   - DeathDelivery::kSharedDatabase (shared_db_batch): the death alone; the batch job
//     (shared_db_batch/batch_sync.h) reads completed workflows from this database itself.
//
// What this buys and costs, against the synchronous saga (sync/synchronous_death_workflow.h):
//   - RecordDeath depends only on the local database: it succeeds while the morgue, the
//     appointments service or the broker is down, and its latency is one local commit.
//   - The other services' part happens later (milliseconds when all is well; after recovery
//     when something is down), so a reader may see a deceased patient not yet admitted.
//   - Nothing is undone: a recorded death is final here, so there is no compensation, and a
//     downstream that cannot apply the event records it as rejected for operators.
//   - Delivery is at least once: consumers are idempotent (messaging/inbox.h).
//
// Thread-safe.
#ifndef HOSPITAL_SRC_INTEGRATION_LOCAL_DEATH_WORKFLOW_H_
#define HOSPITAL_SRC_INTEGRATION_LOCAL_DEATH_WORKFLOW_H_

#include <functional>

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "base/clock.h"
#include "patients/death_workflow.h"
#include "patients/patients_repository.h"

namespace integration {

// Where the other services learn of a death recorded here.
enum class DeathDelivery {
  kOutbox,          // A PatientDied event in the outbox, committed with the death.
  kSharedDatabase,  // Nothing more: another process reads completed workflows from this database.
};

class LocalDeathWorkflow final : public patients::DeathWorkflow {
 public:
  // `committed` is called after each new death is committed (it wakes the relay).
  // Everything passed in must outlive this object.
  LocalDeathWorkflow(
      patients::PatientsRepository& repository, base::Clock& clock, prometheus::Registry& metrics,
      DeathDelivery delivery, std::function<void()> committed = [] {});

  absl::StatusOr<patients::v1::RecordDeathResponse> RecordDeath(
      const patients::DeathRequest& request, absl::Time parent_deadline) override;

 private:
  patients::PatientsRepository& repository_;
  base::Clock& clock_;
  prometheus::Family<prometheus::Counter>& deaths_;
  const DeathDelivery delivery_;
  const std::function<void()> committed_;
};

}  // namespace integration

#endif  // HOSPITAL_SRC_INTEGRATION_LOCAL_DEATH_WORKFLOW_H_
