// The part of the patients service's database that code outside the service reads or writes
// directly: the two shared-disk patterns (src/integration/shared_db_batch and direct_db_write)
// read completed deaths from it and keep how far they have copied them. The patients service's
// migrations (patients_repository.cc) and those patterns both include this header, so that a
// change to these tables or columns is a change to both, in one place.
//
// Rows are read in rowid order: SQLite has one writer, so rowids grow in commit order and a
// reader never finds a smaller one committed later (no row of death_workflows is deleted).
#ifndef HOSPITAL_SRC_PATIENTS_SHARED_SCHEMA_H_
#define HOSPITAL_SRC_PATIENTS_SHARED_SCHEMA_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server_kit/database.h"

namespace patients {

// death_workflows.state of a death that stands (WorkflowState::kCompleted).
inline constexpr int kCompletedWorkflowState = 2;

// The table of how far completed deaths were copied, per target: in the batch job's own database,
// and (migration v5) in the patients database when the patients service copies them itself
// (--death_workflow=direct_db_write).
extern const char kCopyPositionsMigration[];

// A completed death, as the copying patterns read it.
struct CompletedDeath {
  std::int64_t rowid = 0;   // Its position in death_workflows.
  std::string workflow_id;  // The event id it is applied under.
  std::string patient_id;
  absl::Time time_of_death;
  std::string cause;
  absl::Time record_time;
};

// Completed deaths after `after_rowid`, in rowid order, at most `limit`; read in `session`, a
// session of the patients database.
absl::StatusOr<std::vector<CompletedDeath>> ReadCompletedDeaths(
    server_kit::Database::Session& session, std::int64_t after_rowid, int limit);

}  // namespace patients

#endif  // HOSPITAL_SRC_PATIENTS_SHARED_SCHEMA_H_
