// The asynchronous death workflow (--death_workflow=async): RecordDeath commits the death and a
// PatientDied event together (the transactional outbox, messaging/outbox.h) and answers at once;
// the outbox relay publishes the event to NATS JetStream, and the morgue and appointments
// services apply it from their own durable consumers (messaging/jetstream_consumer.h).
// With DeathDelivery::kSharedDatabase (--death_workflow=shared_db_batch) it commits the death
// alone, and the batch job (src/batch_sync) copies completed workflows into the other services'
// databases.
//
// What this buys and costs, against SynchronousDeathWorkflow:
//   - RecordDeath depends only on the local database: it succeeds while the morgue, the
//     appointments service or the broker is down, and its latency is one local commit.
//   - The other services' part happens later (milliseconds when all is well; after recovery
//     when something is down), so a reader may see a deceased patient not yet admitted.
//   - Nothing is undone: a recorded death is final here, so there is no compensation, and a
//     downstream that cannot apply the event records it as rejected for operators.
//   - Delivery is at least once: consumers are idempotent (messaging/inbox.h).
//
// Thread-safe.
#ifndef HOSPITAL_SRC_PATIENTS_ASYNC_DEATH_WORKFLOW_H_
#define HOSPITAL_SRC_PATIENTS_ASYNC_DEATH_WORKFLOW_H_

#include <functional>

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "base/clock.h"
#include "patients/death_workflow.h"
#include "patients/patients_repository.h"

namespace patients {

// Where the other services learn of a death recorded here.
enum class DeathDelivery {
  kOutbox,          // A PatientDied event in the outbox (relayed to NATS).
  kSharedDatabase,  // Nothing more: the batch job reads completed workflows from this database.
};

class AsynchronousDeathWorkflow final : public DeathWorkflow {
 public:
  // `committed` is called after each death committed (it wakes the relay).
  // Everything passed in must outlive this object.
  AsynchronousDeathWorkflow(PatientsRepository& repository, base::Clock& clock,
                            prometheus::Registry& metrics, std::function<void()> committed,
                            DeathDelivery delivery = DeathDelivery::kOutbox);

  absl::StatusOr<v1::RecordDeathResponse> RecordDeath(const DeathRequest& request,
                                                      absl::Time parent_deadline) override;

 private:
  PatientsRepository& repository_;
  base::Clock& clock_;
  prometheus::Family<prometheus::Counter>& deaths_;
  const std::function<void()> committed_;
  const DeathDelivery delivery_;
};

}  // namespace patients

#endif  // HOSPITAL_SRC_PATIENTS_ASYNC_DEATH_WORKFLOW_H_
