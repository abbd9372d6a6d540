// The direct database write (--death_workflow=direct_db_write): the patients service writes a
// death into the morgue's and the appointments service's databases itself, as teams do when
// they skip the other service's API. RecordDeath commits the death locally first (the record
// that it must reach the others), then runs the copying pass of the batch job
// (batch_sync::BatchSync) over the patients database at once, and answers DOWNSTREAM_APPLIED if
// both databases took it, DOWNSTREAM_PENDING if one did not (locked, missing, a schema this
// binary does not know); the same pass runs in the background every interval and finishes
// what was left, across restarts.
//
// Why not one transaction over the three files (ATTACH)? The services' databases are in WAL
// mode, where a transaction over attached files is atomic per file only: a crash between two
// files' commits leaves one committed (test/services/sqlite_attach_test.cc). Atomic commits
// across files need the rollback journal, which would take WAL's concurrent readers from the
// owners. So the variant is built on what holds: the local commit is the durable intent, each
// target applies a death idempotently in its inbox, and the pass resumes from saved positions.
//
// Thread-safe: passes are serialised (concurrent deaths share the next pass).
#ifndef HOSPITAL_SRC_PATIENTS_DIRECT_WRITE_DEATH_WORKFLOW_H_
#define HOSPITAL_SRC_PATIENTS_DIRECT_WRITE_DEATH_WORKFLOW_H_

#include <optional>

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "base/clock.h"
#include "base/periodic_thread.h"
#include "base/sync.h"
#include "batch_sync/batch_sync.h"
#include "patients/death_workflow.h"
#include "patients/patients_repository.h"

namespace patients {

class DirectWriteDeathWorkflow final : public DeathWorkflow {
 public:
  // Everything passed in must outlive this object. `copy` writes into the other databases.
  DirectWriteDeathWorkflow(PatientsRepository& repository, batch_sync::BatchSync& copy,
                           base::Clock& clock, prometheus::Registry& metrics);
  ~DirectWriteDeathWorkflow();

  absl::StatusOr<v1::RecordDeathResponse> RecordDeath(const DeathRequest& request,
                                                      absl::Time parent_deadline) override;

  // Runs the pass every `interval` in the background until Stop.
  void StartBackground(absl::Duration interval);
  void Stop();

 private:
  // One pass over every death not yet copied; OK when both databases are up to date.
  absl::Status Copy();

  PatientsRepository& repository_;
  base::Clock& clock_;
  prometheus::Family<prometheus::Counter>& deaths_;
  base::Mutex copy_mutex_;
  batch_sync::BatchSync& copy_ ABSL_GUARDED_BY(copy_mutex_);
  std::optional<base::PeriodicThread> background_;
};

}  // namespace patients

#endif  // HOSPITAL_SRC_PATIENTS_DIRECT_WRITE_DEATH_WORKFLOW_H_
