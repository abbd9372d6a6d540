#include "integration/shared_db_batch/batch_sync.h"

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "hospital/patients/v1/events.pb.h"
#include "patients/shared_schema.h"
#include "server_kit/log.h"
#include "server_kit/rpc_support.h"
#include "server_kit/sqlite.h"

namespace integration::shared_db_batch {
namespace {

// The subject a PatientDied event carries on the broker; the handlers do not depend on it.
constexpr char kPatientDiedSubject[] = "hospital.patients.v1.patient_died";

}  // namespace

absl::StatusOr<std::unique_ptr<server_kit::Database>> OpenServiceDatabase(
    absl::string_view flag, const std::string& path, absl::string_view required,
    const server_kit::DatabaseOptions& options) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", required));
  if (server_kit::IsPostgresLocation(path)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag, ": the shared-disk patterns share SQLite files; a PostgreSQL URI is not one"));
  }
  absl::StatusOr<std::unique_ptr<server_kit::SqliteDatabase>> database =
      server_kit::SqliteDatabase::OpenExisting(server_kit::SqlitePath(path), options);
  if (!database.ok()) {
    return absl::Status(database.status().code(),
                        absl::StrCat("--", flag, ": ", database.status().message(),
                                     " (start its service first: it creates the database)"));
  }
  return std::unique_ptr<server_kit::Database>(*std::move(database));
}

const server_kit::Schema& Migrations() {
  // SQLite only: the job shares the services' SQLite files, and keeps its own data beside them.
  static const auto* const migrations =
      new server_kit::Schema{/*sqlite=*/{patients::kCopyPositionsMigration}, /*postgres=*/{}};
  return *migrations;
}

BatchSync::BatchSync(server_kit::Database& own, server_kit::Database& patients,
                     std::vector<SyncTarget> targets, base::Clock& clock,
                     prometheus::Registry& metrics, int batch_size)
    : own_(own),
      patients_(patients),
      targets_(std::move(targets)),
      clock_(clock),
      batch_size_(batch_size),
      events_(prometheus::BuildCounter()
                  .Name("hospital_batch_sync_events_total")
                  .Help("Deaths the batch job took to a target, by outcome: applied, duplicate "
                        "(already there: a batch re-applied after a crash), rejected (the target "
                        "refused it for good).")
                  .Register(metrics)),
      failures_(prometheus::BuildCounter()
                    .Name("hospital_batch_sync_failures_total")
                    .Help("Batches that failed and will be tried again at the next pass, by "
                          "target (a locked or missing database, a schema the job does not "
                          "know).")
                    .Register(metrics)),
      last_success_(prometheus::BuildGauge()
                        .Name("hospital_batch_sync_last_success_seconds")
                        .Help("Unix time of the last pass that brought the target up to date.")
                        .Register(metrics)) {}

absl::Status BatchSync::RunOnce() {
  absl::Status first_failure;
  for (const SyncTarget& target : targets_) {
    absl::Status status;
    while (true) {
      absl::StatusOr<int> taken = SyncBatch(target);
      if (!taken.ok()) {
        status = taken.status();
        break;
      }
      if (*taken < batch_size_) break;
    }
    if (status.ok()) {
      last_success_.Add({{"target", target.name}})
          .Set(absl::ToDoubleSeconds(clock_.Now() - absl::UnixEpoch()));
      continue;
    }
    failures_.Add({{"target", target.name}}).Increment();
    server_kit::Log(server_kit::LogLevel::kWarning, "batch_sync_failed",
                    {{"target", target.name}, {"error", status.ToString()}});
    if (first_failure.ok()) first_failure = status;
  }
  return first_failure;
}

absl::StatusOr<int> BatchSync::SyncBatch(const SyncTarget& target) {
  ASSIGN_OR_RETURN(const std::int64_t position, Position(target.name));
  ASSIGN_OR_RETURN(std::vector<Death> deaths, ReadDeaths(position));
  if (deaths.empty()) return 0;
  std::vector<messaging::InboundEvent> events;
  events.reserve(deaths.size());
  for (const Death& death : deaths) events.push_back(death.event);
  messaging::Inbox inbox(*target.database, *target.handler, clock_);
  const std::vector<messaging::EventOutcome> outcomes = inbox.Process(events);
  // The position moves past every death settled for good (applied, already there, rejected),
  // up to the first that must be tried again.
  std::int64_t settled = position;
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    if (outcomes[i].disposition == messaging::Disposition::kRetry) {
      RETURN_IF_ERROR(SavePosition(target.name, settled));
      return absl::Status(outcomes[i].status.code(),
                          absl::StrCat(target.name, ": ", outcomes[i].status.message()));
    }
    if (outcomes[i].disposition == messaging::Disposition::kRejected) {
      server_kit::Log(server_kit::LogLevel::kError, "batch_sync_rejected",
                      {{"target", target.name},
                       {"event_id", deaths[i].event.event_id},
                       {"error", outcomes[i].status.ToString()}});
    }
    events_
        .Add({{"target", target.name},
              {"outcome", messaging::DispositionName(outcomes[i].disposition)}})
        .Increment();
    settled = deaths[i].rowid;
  }
  RETURN_IF_ERROR(SavePosition(target.name, settled));
  return static_cast<int>(deaths.size());
}

absl::StatusOr<std::int64_t> BatchSync::Position(const std::string& target) {
  std::int64_t position = 0;
  RETURN_IF_ERROR(own_.WithSession([&](server_kit::Database::Session& session) -> absl::Status {
    server_kit::Statement& select =
        session.Prepare("SELECT last_rowid FROM sync_positions WHERE target = ?1");
    select.BindText(1, target);
    return select.ForEachRow(
        [&](const server_kit::Statement& row) { position = row.ColumnInt(0); });
  }));
  return position;
}

absl::Status BatchSync::SavePosition(const std::string& target, std::int64_t rowid) {
  return own_.InTransaction([&](server_kit::Database::Session& session) -> absl::Status {
    server_kit::Statement& upsert = session.Prepare(
        "INSERT INTO sync_positions (target, last_rowid, update_time) VALUES (?1, ?2, ?3) "
        "ON CONFLICT (target) DO UPDATE SET last_rowid = excluded.last_rowid, "
        "update_time = excluded.update_time");
    upsert.BindText(1, target);
    upsert.BindInt(2, rowid);
    upsert.BindTime(3, clock_.Now());
    return upsert.Run();
  });
}

absl::StatusOr<std::vector<BatchSync::Death>> BatchSync::ReadDeaths(std::int64_t rowid) {
  std::vector<patients::CompletedDeath> completed;
  RETURN_IF_ERROR(
      patients_.WithSession([&](server_kit::Database::Session& session) -> absl::Status {
        ASSIGN_OR_RETURN(completed, patients::ReadCompletedDeaths(session, rowid, batch_size_));
        return absl::OkStatus();
      }));
  std::vector<Death> deaths;
  deaths.reserve(completed.size());
  for (const patients::CompletedDeath& row : completed) {
    hospital::patients::v1::PatientDied died;
    died.set_event_id(row.workflow_id);
    died.set_patient_id(row.patient_id);
    *died.mutable_time_of_death() = server_kit::ToProtoTime(row.time_of_death);
    died.set_cause(row.cause);
    *died.mutable_record_time() = server_kit::ToProtoTime(row.record_time);
    Death death;
    death.rowid = row.rowid;
    death.event.event_id = died.event_id();
    death.event.subject = kPatientDiedSubject;
    death.event.payload = died.SerializeAsString();
    deaths.push_back(std::move(death));
  }
  return deaths;
}

}  // namespace integration::shared_db_batch
