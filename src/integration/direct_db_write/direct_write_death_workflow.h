// The direct database write (--death_workflow=direct_db_write): the patients service writes a
// death into the morgue's and the appointments service's databases itself, as teams do when
// they skip the other service's API. RecordDeath commits the death locally first (the record
// that it must reach the others), then runs the copying pass of the batch job
// (shared_db_batch::BatchSync) over the patients database at once, and answers DOWNSTREAM_APPLIED
// if both databases took it, DOWNSTREAM_PENDING if one did not (locked, missing, a schema this
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
// Thread-safe. One pass runs at a time, and concurrent deaths share passes: a death waits for
// the first pass that starts after its commit (which copies it), so that while a database is
// locked each caller waits for at most two passes (one running, the next), not for one pass per
// death queued before it.
#ifndef HOSPITAL_SRC_INTEGRATION_DIRECT_DB_WRITE_DIRECT_WRITE_DEATH_WORKFLOW_H_
#define HOSPITAL_SRC_INTEGRATION_DIRECT_DB_WRITE_DIRECT_WRITE_DEATH_WORKFLOW_H_

#include <cstdint>
#include <optional>

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "base/clock.h"
#include "base/periodic_thread.h"
#include "base/sync.h"
#include "integration/shared_db_batch/batch_sync.h"
#include "patients/death_workflow.h"
#include "patients/patients_repository.h"

namespace integration::direct_db_write {

class DirectWriteDeathWorkflow final : public patients::DeathWorkflow {
 public:
  // Everything passed in must outlive this object. `copy` writes into the other databases.
  DirectWriteDeathWorkflow(patients::PatientsRepository& repository,
                           shared_db_batch::BatchSync& copy, base::Clock& clock,
                           prometheus::Registry& metrics);
  ~DirectWriteDeathWorkflow();

  absl::StatusOr<patients::v1::RecordDeathResponse> RecordDeath(
      const patients::DeathRequest& request, absl::Time parent_deadline) override;

  // Runs the pass every `interval` in the background until Stop.
  void StartBackground(absl::Duration interval);
  void Stop();

 private:
  // Waits for a pass that started after this call (running it when none is running) and
  // returns its result: OK when both databases took every death committed before the call.
  absl::Status Copy();

  patients::PatientsRepository& repository_;
  base::Clock& clock_;
  prometheus::Family<prometheus::Counter>& deaths_;
  // Run only by the caller that set running_.
  shared_db_batch::BatchSync& copy_;
  base::Mutex mutex_;
  base::CondVar pass_ended_;
  bool running_ ABSL_GUARDED_BY(mutex_) = false;
  // Passes started and ended so far, and the last ended one's result.
  std::int64_t started_ ABSL_GUARDED_BY(mutex_) = 0;
  std::int64_t ended_ ABSL_GUARDED_BY(mutex_) = 0;
  absl::Status last_result_ ABSL_GUARDED_BY(mutex_);
  std::optional<base::PeriodicThread> background_;
};

}  // namespace integration::direct_db_write

#endif  // HOSPITAL_SRC_INTEGRATION_DIRECT_DB_WRITE_DIRECT_WRITE_DEATH_WORKFLOW_H_
