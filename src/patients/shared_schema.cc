#include "patients/shared_schema.h"

namespace patients {

const char kCopyPositionsMigration[] = R"sql(
  -- The last death_workflows rowid of the patients database applied to each target.
  CREATE TABLE sync_positions (
    target      TEXT PRIMARY KEY,
    last_rowid  INTEGER NOT NULL,
    update_time INTEGER NOT NULL
  );
)sql";

absl::StatusOr<std::vector<CompletedDeath>> ReadCompletedDeaths(
    server_kit::Database::Session& session, std::int64_t after_rowid, int limit) {
  std::vector<CompletedDeath> deaths;
  server_kit::Statement& select = session.Prepare(
      "SELECT rowid, workflow_id, patient_id, time_of_death, cause, create_time "
      "FROM death_workflows WHERE state = ?1 AND rowid > ?2 ORDER BY rowid LIMIT ?3");
  select.BindInt(1, kCompletedWorkflowState);
  select.BindInt(2, after_rowid);
  select.BindInt(3, limit);
  absl::Status status = select.ForEachRow([&](const server_kit::Statement& row) {
    CompletedDeath death;
    death.rowid = row.ColumnInt(0);
    death.workflow_id = row.ColumnText(1);
    death.patient_id = row.ColumnText(2);
    death.time_of_death = row.ColumnTime(3);
    death.cause = row.ColumnText(4);
    death.record_time = row.ColumnTime(5);
    deaths.push_back(std::move(death));
  });
  if (!status.ok()) return status;
  return deaths;
}

}  // namespace patients
