#include "patients/patients_repository.h"

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "messaging/outbox.h"
#include "server_kit/rpc_support.h"

namespace patients {
namespace {

using server_kit::Database;
using server_kit::Statement;

// Columns of a patient joined with the workflow that records their death, if any.
constexpr char kPatientSelect[] =
    "SELECT p.patient_id, p.given_name, p.family_name, p.date_of_birth, p.phone, p.email, "
    "p.address, p.status, p.create_time, p.update_time, w.time_of_death, w.cause, "
    "w.create_time FROM patients p LEFT JOIN death_workflows w "
    "ON w.patient_id = p.patient_id AND w.state IN (1, 2) ";

v1::Patient ReadPatient(const Statement& row) {
  v1::Patient patient;
  patient.set_patient_id(row.ColumnText(0));
  patient.set_given_name(row.ColumnText(1));
  patient.set_family_name(row.ColumnText(2));
  patient.set_date_of_birth(row.ColumnText(3));
  patient.mutable_contact()->set_phone(row.ColumnText(4));
  patient.mutable_contact()->set_email(row.ColumnText(5));
  patient.mutable_contact()->set_address(row.ColumnText(6));
  patient.set_status(static_cast<v1::PatientStatus>(row.ColumnInt(7)));
  *patient.mutable_create_time() = server_kit::ToProtoTime(row.ColumnTime(8));
  *patient.mutable_update_time() = server_kit::ToProtoTime(row.ColumnTime(9));
  if (patient.status() == v1::DECEASED && !row.ColumnIsNull(10)) {
    v1::Death* death = patient.mutable_death();
    *death->mutable_time_of_death() = server_kit::ToProtoTime(row.ColumnTime(10));
    death->set_cause(row.ColumnText(11));
    *death->mutable_record_time() = server_kit::ToProtoTime(row.ColumnTime(12));
  }
  return patient;
}

absl::StatusOr<std::optional<v1::Patient>> FindPatient(Database::Session& session,
                                                       const std::string& patient_id) {
  Statement& select = session.Prepare(absl::StrCat(kPatientSelect, "WHERE p.patient_id = ?1"));
  select.BindText(1, patient_id);
  absl::StatusOr<bool> row = select.Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<v1::Patient>();
  return std::optional<v1::Patient>(ReadPatient(select));
}

absl::Status PatientNotFound(const std::string& patient_id) {
  return absl::NotFoundError(absl::StrCat("patient_id: no patient \"", patient_id, "\""));
}

// Moves a workflow from PENDING to `to`; FAILED_PRECONDITION if it is not PENDING.
absl::Status LeavePending(Database::Session& session, const std::string& workflow_id,
                          WorkflowState to, absl::Time now) {
  Statement& update = session.Prepare(
      "UPDATE death_workflows SET state = ?2, update_time = ?3 WHERE workflow_id = ?1 AND "
      "state = 1");
  update.BindText(1, workflow_id);
  update.BindInt(2, static_cast<int>(to));
  update.BindTime(3, now);
  if (absl::Status status = update.Run(); !status.ok()) return status;
  if (update.changes() != 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("death workflow \"", workflow_id, "\" is not pending"));
  }
  return absl::OkStatus();
}

// BeginDeath's work, inside the caller's transaction; the new workflow starts in `state`.
absl::Status StartDeath(Database::Session& session, const std::string& patient_id,
                        const std::string& workflow_id, absl::Time time_of_death,
                        const std::string& cause, absl::Time now, WorkflowState state,
                        const WorkflowClaim* claim, BeginDeathResult& result) {
  absl::StatusOr<std::optional<v1::Patient>> patient = FindPatient(session, patient_id);
  if (!patient.ok()) return patient.status();
  if (!patient->has_value()) return PatientNotFound(patient_id);
  Statement& workflows = session.Prepare(
      "SELECT state, result FROM death_workflows WHERE patient_id = ?1 AND state IN (1, 2, 3)");
  workflows.BindText(1, patient_id);
  std::optional<BeginDeathResult::Kind> blocking;
  while (true) {
    absl::StatusOr<bool> row = workflows.Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    switch (static_cast<WorkflowState>(workflows.ColumnInt(0))) {
      case WorkflowState::kCompleted:
        if (!result.recorded.ParseFromString(workflows.ColumnBlob(1))) {
          return absl::DataLossError(
              absl::StrCat("stored death of patient \"", patient_id, "\" cannot be read"));
        }
        blocking = BeginDeathResult::Kind::kAlreadyRecorded;
        break;
      case WorkflowState::kPending:
        blocking = BeginDeathResult::Kind::kInProgress;
        break;
      default:
        if (!blocking) blocking = BeginDeathResult::Kind::kCompensationPending;
        break;
    }
  }
  if (blocking) {
    result.kind = *blocking;
    result.patient = **patient;
    return absl::OkStatus();
  }
  // Compared as calendar days, not as text: a year before 1000 is not zero-padded by
  // FormatTime, and "999-..." sorts after "1990-...".
  const std::string& date_of_birth = (*patient)->date_of_birth();
  absl::CivilDay birth_day;
  const absl::CivilDay death_day = absl::ToCivilDay(time_of_death, absl::UTCTimeZone());
  if (!absl::ParseCivilTime(date_of_birth, &birth_day) || death_day < birth_day) {
    return absl::InvalidArgumentError(
        absl::StrCat("time_of_death: ", absl::FormatCivilTime(death_day),
                     " is before the date of birth ", date_of_birth));
  }
  Statement& insert = session.Prepare(
      "INSERT INTO death_workflows (workflow_id, patient_id, time_of_death, cause, state, "
      "create_time, update_time, claim_owner, claim_expires) "
      "VALUES (?1, ?2, ?3, ?4, ?6, ?5, ?5, ?7, ?8)");
  insert.BindText(1, workflow_id);
  insert.BindText(2, patient_id);
  insert.BindTime(3, time_of_death);
  insert.BindText(4, cause);
  insert.BindTime(5, now);
  insert.BindInt(6, static_cast<int>(state));
  if (claim != nullptr) {  // Otherwise both NULL: nobody needs to drive it.
    insert.BindText(7, claim->owner);
    insert.BindTime(8, claim->expires);
  }
  if (absl::Status inserted = insert.Run(); !inserted.ok()) return inserted;
  Statement& mark =
      session.Prepare("UPDATE patients SET status = 2, update_time = ?2 WHERE patient_id = ?1");
  mark.BindText(1, patient_id);
  mark.BindTime(2, now);
  if (absl::Status marked = mark.Run(); !marked.ok()) return marked;
  absl::StatusOr<std::optional<v1::Patient>> deceased = FindPatient(session, patient_id);
  if (!deceased.ok()) return deceased.status();
  result.kind = BeginDeathResult::Kind::kStarted;
  result.patient = **deceased;
  return absl::OkStatus();
}

}  // namespace

const char* CompensationActionName(CompensationAction action) {
  return action == CompensationAction::kCancelAdmission ? "cancel_admission"
                                                        : "restore_appointments";
}

const server_kit::Schema& Migrations() {
  static const auto* const migrations = new server_kit::Schema{
      /*sqlite=*/{
          R"sql(
        CREATE TABLE patients (
          patient_id    TEXT PRIMARY KEY,
          given_name    TEXT NOT NULL,
          family_name   TEXT NOT NULL,
          date_of_birth TEXT NOT NULL,
          phone         TEXT NOT NULL DEFAULT '',
          email         TEXT NOT NULL DEFAULT '',
          address       TEXT NOT NULL DEFAULT '',
          status        INTEGER NOT NULL CHECK (status IN (1, 2)),
          create_time   INTEGER NOT NULL,
          update_time   INTEGER NOT NULL
        );
        CREATE INDEX patients_by_status ON patients (status, patient_id);
        -- One row per attempt to record a death. State: 1 pending, 2 completed,
        -- 3 compensating, 4 compensated.
        CREATE TABLE death_workflows (
          workflow_id   TEXT PRIMARY KEY,
          patient_id    TEXT NOT NULL REFERENCES patients (patient_id),
          time_of_death INTEGER NOT NULL,
          cause         TEXT NOT NULL,
          state         INTEGER NOT NULL CHECK (state IN (1, 2, 3, 4)),
          result        BLOB,
          failure       TEXT,
          create_time   INTEGER NOT NULL,
          update_time   INTEGER NOT NULL
        );
        -- At most one pending or completed death per patient, whatever the code above does.
        CREATE UNIQUE INDEX one_death_per_patient ON death_workflows (patient_id)
          WHERE state IN (1, 2);
        CREATE INDEX workflows_by_state ON death_workflows (state, update_time);
        -- Undo calls owed to downstream services by failed workflows.
        CREATE TABLE compensations (
          workflow_id       TEXT NOT NULL REFERENCES death_workflows (workflow_id),
          action            INTEGER NOT NULL CHECK (action IN (0, 1)),
          attempts          INTEGER NOT NULL DEFAULT 0,
          next_attempt_time INTEGER NOT NULL,
          last_error        TEXT,
          done_time         INTEGER,
          PRIMARY KEY (workflow_id, action)
        );
        CREATE INDEX compensations_due ON compensations (next_attempt_time)
          WHERE done_time IS NULL;
      )sql",
          // v2: BeginDeath looks up a patient's workflows in states 1-3, which the partial unique
          // index above cannot serve; without this index SQLite walked every completed workflow,
          // and RecordDeath slowed down as deaths accumulated.
          R"sql(
        CREATE INDEX workflows_by_patient ON death_workflows (patient_id, state);
      )sql",
          // v3: the transactional outbox of the asynchronous death workflow.
          messaging::kOutboxMigration,
          // v4: the morgue's admission stays provisional (the body cannot be released) until the
          // completed workflow confirms it; a confirmation is owed from the transaction that
          // completes the workflow until the morgue has acknowledged it.
          R"sql(
        CREATE TABLE admission_confirmations (
          workflow_id       TEXT PRIMARY KEY REFERENCES death_workflows (workflow_id),
          attempts          INTEGER NOT NULL DEFAULT 0,
          next_attempt_time INTEGER NOT NULL,
          last_error        TEXT,
          done_time         INTEGER
        );
        CREATE INDEX admission_confirmations_due ON admission_confirmations (next_attempt_time)
          WHERE done_time IS NULL;
      )sql",
          // v5: how far deaths have been written into the other services' databases
          // (--death_workflow=direct_db_write).
          kCopyPositionsMigration,
          // v6: the claim of the replica driving a workflow (WorkflowClaim), so that replicas
          // sharing a database leave each other's workflows alone.
          R"sql(
        ALTER TABLE death_workflows ADD COLUMN claim_owner TEXT;
        ALTER TABLE death_workflows ADD COLUMN claim_expires INTEGER;
      )sql",
      },
      /*postgres=*/{
          // v1: the tables of SQLite's v1-v4 (the copy positions of v5 belong to direct_db_write,
          // a shared-disk pattern that stays on SQLite). Ids sort by byte, as in SQLite.
          R"sql(
        CREATE TABLE patients (
          patient_id    TEXT COLLATE "C" PRIMARY KEY,
          given_name    TEXT NOT NULL,
          family_name   TEXT NOT NULL,
          date_of_birth TEXT NOT NULL,
          phone         TEXT NOT NULL DEFAULT '',
          email         TEXT NOT NULL DEFAULT '',
          address       TEXT NOT NULL DEFAULT '',
          status        INTEGER NOT NULL CHECK (status IN (1, 2)),
          create_time   BIGINT NOT NULL,
          update_time   BIGINT NOT NULL
        );
        CREATE INDEX patients_by_status ON patients (status, patient_id);
        CREATE TABLE death_workflows (
          workflow_id   TEXT COLLATE "C" PRIMARY KEY,
          patient_id    TEXT COLLATE "C" NOT NULL REFERENCES patients (patient_id),
          time_of_death BIGINT NOT NULL,
          cause         TEXT NOT NULL,
          state         INTEGER NOT NULL CHECK (state IN (1, 2, 3, 4)),
          result        BYTEA,
          failure       TEXT,
          create_time   BIGINT NOT NULL,
          update_time   BIGINT NOT NULL
        );
        CREATE UNIQUE INDEX one_death_per_patient ON death_workflows (patient_id)
          WHERE state IN (1, 2);
        CREATE INDEX workflows_by_state ON death_workflows (state, update_time);
        CREATE INDEX workflows_by_patient ON death_workflows (patient_id, state);
        CREATE TABLE compensations (
          workflow_id       TEXT COLLATE "C" NOT NULL REFERENCES death_workflows (workflow_id),
          action            INTEGER NOT NULL CHECK (action IN (0, 1)),
          attempts          INTEGER NOT NULL DEFAULT 0,
          next_attempt_time BIGINT NOT NULL,
          last_error        TEXT,
          done_time         BIGINT,
          PRIMARY KEY (workflow_id, action)
        );
        CREATE INDEX compensations_due ON compensations (next_attempt_time)
          WHERE done_time IS NULL;
        CREATE TABLE admission_confirmations (
          workflow_id       TEXT COLLATE "C" PRIMARY KEY
                            REFERENCES death_workflows (workflow_id),
          attempts          INTEGER NOT NULL DEFAULT 0,
          next_attempt_time BIGINT NOT NULL,
          last_error        TEXT,
          done_time         BIGINT
        );
        CREATE INDEX admission_confirmations_due ON admission_confirmations (next_attempt_time)
          WHERE done_time IS NULL;
      )sql",
          messaging::kPostgresOutboxMigration,
          // v3: as SQLite's v6.
          R"sql(
        ALTER TABLE death_workflows ADD COLUMN claim_owner TEXT;
        ALTER TABLE death_workflows ADD COLUMN claim_expires BIGINT;
      )sql",
          // v4: the relays of several replicas claim each aggregate's oldest unpublished event.
          messaging::kPostgresOutboxClaimMigration,
      }};
  return *migrations;
}

absl::StatusOr<v1::Patient> PatientsRepository::Create(const v1::Patient& patient, absl::Time now) {
  v1::Patient created;
  absl::Status status = database_.InTransaction([&](Database::Session& session) -> absl::Status {
    Statement& insert = session.Prepare(
        "INSERT INTO patients (patient_id, given_name, family_name, date_of_birth, phone, email, "
        "address, status, create_time, update_time) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, "
        "?8)");
    insert.BindText(1, patient.patient_id());
    insert.BindText(2, patient.given_name());
    insert.BindText(3, patient.family_name());
    insert.BindText(4, patient.date_of_birth());
    insert.BindText(5, patient.contact().phone());
    insert.BindText(6, patient.contact().email());
    insert.BindText(7, patient.contact().address());
    insert.BindTime(8, now);
    if (absl::Status inserted = insert.Run(); !inserted.ok()) {
      if (absl::IsAlreadyExists(inserted)) {
        return absl::AlreadyExistsError(
            absl::StrCat("patient_id: patient \"", patient.patient_id(), "\" already exists"));
      }
      return inserted;
    }
    absl::StatusOr<std::optional<v1::Patient>> row = FindPatient(session, patient.patient_id());
    if (!row.ok()) return row.status();
    created = **row;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return created;
}

absl::StatusOr<v1::Patient> PatientsRepository::Get(const std::string& patient_id) {
  std::optional<v1::Patient> found;
  absl::Status status = database_.WithSession([&](Database::Session& session) -> absl::Status {
    absl::StatusOr<std::optional<v1::Patient>> row = FindPatient(session, patient_id);
    if (!row.ok()) return row.status();
    found = *std::move(row);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  if (!found) return PatientNotFound(patient_id);
  return *std::move(found);
}

absl::StatusOr<PatientPage> PatientsRepository::List(const std::string& after_id, int limit,
                                                     v1::PatientStatus status_filter) {
  PatientPage page;
  absl::Status status = database_.WithSession([&](Database::Session& session) -> absl::Status {
    Statement& select = session.Prepare(absl::StrCat(
        kPatientSelect,
        "WHERE p.patient_id > ?1 AND (?2 = 0 OR p.status = ?2) ORDER BY p.patient_id LIMIT ?3"));
    select.BindText(1, after_id);
    select.BindInt(2, status_filter);
    ASSIGN_OR_RETURN(page, server_kit::ReadPage<v1::Patient>(
                               select, 3, limit, ReadPatient,
                               [](const v1::Patient& last) { return last.patient_id(); }));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return page;
}

absl::StatusOr<v1::Patient> PatientsRepository::UpdateContact(const std::string& patient_id,
                                                              const v1::ContactDetails& contact,
                                                              absl::Time now) {
  v1::Patient updated;
  absl::Status status = database_.InTransaction([&](Database::Session& session) -> absl::Status {
    Statement& update = session.Prepare(
        "UPDATE patients SET phone = ?2, email = ?3, address = ?4, update_time = ?5 "
        "WHERE patient_id = ?1");
    update.BindText(1, patient_id);
    update.BindText(2, contact.phone());
    update.BindText(3, contact.email());
    update.BindText(4, contact.address());
    update.BindTime(5, now);
    if (absl::Status result = update.Run(); !result.ok()) return result;
    if (update.changes() != 1) return PatientNotFound(patient_id);
    absl::StatusOr<std::optional<v1::Patient>> row = FindPatient(session, patient_id);
    if (!row.ok()) return row.status();
    updated = **row;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return updated;
}

absl::StatusOr<BeginDeathResult> PatientsRepository::BeginDeath(
    const std::string& patient_id, const std::string& workflow_id, absl::Time time_of_death,
    const std::string& cause, absl::Time now, const WorkflowClaim& claim) {
  BeginDeathResult result;
  absl::Status status = database_.InTransaction([&](Database::Session& session) {
    return StartDeath(session, patient_id, workflow_id, time_of_death, cause, now,
                      WorkflowState::kPending, &claim, result);
  });
  if (!status.ok()) return status;
  return result;
}

absl::StatusOr<bool> PatientsRepository::ClaimWorkflow(const std::string& workflow_id,
                                                       const WorkflowClaim& claim, absl::Time now) {
  bool claimed = false;
  const absl::Status status = database_.InTransaction([&](Database::Session& session)
                                                          -> absl::Status {
    Statement& take = session.Prepare(
        "UPDATE death_workflows SET claim_owner = ?2, claim_expires = ?3 WHERE workflow_id = ?1 "
        "AND (claim_owner IS NULL OR claim_owner = ?2 OR claim_expires <= ?4)");
    take.BindText(1, workflow_id);
    take.BindText(2, claim.owner);
    take.BindTime(3, claim.expires);
    take.BindTime(4, now);
    RETURN_IF_ERROR(take.Run());
    claimed = take.changes() == 1;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return claimed;
}

absl::StatusOr<BeginDeathResult> PatientsRepository::RecordDeathWithEvent(
    const std::string& patient_id, const std::string& event_id, absl::Time time_of_death,
    const std::string& cause, absl::Time now, bool with_event) {
  BeginDeathResult result;
  absl::Status status = database_.InTransaction([&](Database::Session& session) -> absl::Status {
    RETURN_IF_ERROR(StartDeath(session, patient_id, event_id, time_of_death, cause, now,
                               WorkflowState::kCompleted, /*claim=*/nullptr, result));
    if (result.kind != BeginDeathResult::Kind::kStarted) return absl::OkStatus();
    v1::RecordDeathResponse& response = result.recorded;
    *response.mutable_patient() = result.patient;
    response.set_workflow_id(event_id);
    response.set_event_id(event_id);
    response.set_downstream_state(v1::DOWNSTREAM_PENDING);
    Statement& store =
        session.Prepare("UPDATE death_workflows SET result = ?2 WHERE workflow_id = ?1");
    store.BindText(1, event_id);
    store.BindBlob(2, response.SerializeAsString());
    RETURN_IF_ERROR(store.Run());
    if (!with_event) return absl::OkStatus();
    v1::PatientDied died;
    died.set_event_id(event_id);
    died.set_patient_id(patient_id);
    *died.mutable_time_of_death() = server_kit::ToProtoTime(time_of_death);
    died.set_cause(cause);
    *died.mutable_record_time() = server_kit::ToProtoTime(now);
    return messaging::AppendToOutbox(
        session,
        {event_id, "patient", patient_id, v1::PatientDied::descriptor()->full_name(),
         std::string(kPatientDiedSubject), died.SerializeAsString()},
        now);
  });
  if (!status.ok()) return status;
  return result;
}

absl::Status PatientsRepository::CompleteDeath(const std::string& workflow_id,
                                               const v1::RecordDeathResponse& response,
                                               absl::Time now) {
  return database_.InTransaction([&](Database::Session& session) -> absl::Status {
    if (absl::Status left = LeavePending(session, workflow_id, WorkflowState::kCompleted, now);
        !left.ok()) {
      return left;
    }
    Statement& store =
        session.Prepare("UPDATE death_workflows SET result = ?2 WHERE workflow_id = ?1");
    store.BindText(1, workflow_id);
    store.BindBlob(2, response.SerializeAsString());
    RETURN_IF_ERROR(store.Run());
    Statement& owe = session.Prepare(
        "INSERT INTO admission_confirmations (workflow_id, next_attempt_time) VALUES (?1, ?2)");
    owe.BindText(1, workflow_id);
    owe.BindTime(2, now);
    return owe.Run();
  });
}

absl::Status PatientsRepository::ConfirmationDone(const std::string& workflow_id, absl::Time now) {
  return database_.InTransaction([&](Database::Session& session) -> absl::Status {
    Statement& done = session.Prepare(
        "UPDATE admission_confirmations SET done_time = ?2, attempts = attempts + 1 "
        "WHERE workflow_id = ?1 AND done_time IS NULL");
    done.BindText(1, workflow_id);
    done.BindTime(2, now);
    return done.Run();
  });
}

absl::Status PatientsRepository::ConfirmationFailed(const std::string& workflow_id,
                                                    const std::string& error,
                                                    absl::Time next_attempt) {
  return database_.InTransaction([&](Database::Session& session) -> absl::Status {
    Statement& failed = session.Prepare(
        "UPDATE admission_confirmations SET attempts = attempts + 1, last_error = ?2, "
        "next_attempt_time = ?3 WHERE workflow_id = ?1 AND done_time IS NULL");
    failed.BindText(1, workflow_id);
    failed.BindText(2, error);
    failed.BindTime(3, next_attempt);
    return failed.Run();
  });
}

absl::StatusOr<std::vector<DueConfirmation>> PatientsRepository::DueConfirmations(absl::Time now,
                                                                                  int limit) {
  std::vector<DueConfirmation> due;
  RETURN_IF_ERROR(database_.WithSession([&](Database::Session& session) -> absl::Status {
    Statement& select = session.Prepare(
        "SELECT c.workflow_id, w.patient_id, c.attempts FROM admission_confirmations c "
        "JOIN death_workflows w ON w.workflow_id = c.workflow_id "
        "WHERE c.done_time IS NULL AND c.next_attempt_time <= ?1 "
        "ORDER BY c.next_attempt_time LIMIT ?2");
    select.BindTime(1, now);
    select.BindInt(2, limit);
    return select.ForEachRow([&](const Statement& row) {
      due.push_back({row.ColumnText(0), row.ColumnText(1), static_cast<int>(row.ColumnInt(2))});
    });
  }));
  return due;
}

absl::StatusOr<int> PatientsRepository::PendingConfirmationCount() {
  int count = 0;
  RETURN_IF_ERROR(database_.WithSession([&](Database::Session& session) -> absl::Status {
    Statement& select =
        session.Prepare("SELECT count(*) FROM admission_confirmations WHERE done_time IS NULL");
    ASSIGN_OR_RETURN(const bool row, select.Step());
    count = row ? static_cast<int>(select.ColumnInt(0)) : 0;
    return absl::OkStatus();
  }));
  return count;
}

absl::Status PatientsRepository::BeginCompensation(const std::string& workflow_id,
                                                   const std::string& failure, absl::Time now) {
  return database_.InTransaction([&](Database::Session& session) -> absl::Status {
    if (absl::Status left = LeavePending(session, workflow_id, WorkflowState::kCompensating, now);
        !left.ok()) {
      return left;
    }
    Statement& note =
        session.Prepare("UPDATE death_workflows SET failure = ?2 WHERE workflow_id = ?1");
    note.BindText(1, workflow_id);
    note.BindText(2, failure);
    if (absl::Status noted = note.Run(); !noted.ok()) return noted;
    Statement& restore = session.Prepare(
        "UPDATE patients SET status = 1, update_time = ?2 WHERE patient_id = "
        "(SELECT patient_id FROM death_workflows WHERE workflow_id = ?1)");
    restore.BindText(1, workflow_id);
    restore.BindTime(2, now);
    if (absl::Status restored = restore.Run(); !restored.ok()) return restored;
    for (CompensationAction action :
         {CompensationAction::kCancelAdmission, CompensationAction::kRestoreAppointments}) {
      Statement& owe = session.Prepare(
          "INSERT INTO compensations (workflow_id, action, next_attempt_time) VALUES (?1, ?2, ?3)");
      owe.BindText(1, workflow_id);
      owe.BindInt(2, static_cast<int>(action));
      owe.BindTime(3, now);
      if (absl::Status owed = owe.Run(); !owed.ok()) return owed;
    }
    return absl::OkStatus();
  });
}

absl::Status PatientsRepository::CompensationDone(const std::string& workflow_id,
                                                  CompensationAction action, absl::Time now) {
  return database_.InTransaction([&](Database::Session& session) -> absl::Status {
    Statement& done = session.Prepare(
        "UPDATE compensations SET done_time = ?3, attempts = attempts + 1 "
        "WHERE workflow_id = ?1 AND action = ?2 AND done_time IS NULL");
    done.BindText(1, workflow_id);
    done.BindInt(2, static_cast<int>(action));
    done.BindTime(3, now);
    if (absl::Status marked = done.Run(); !marked.ok()) return marked;
    Statement& finish = session.Prepare(
        "UPDATE death_workflows SET state = 4, update_time = ?2 WHERE workflow_id = ?1 AND "
        "state = 3 AND NOT EXISTS (SELECT 1 FROM compensations WHERE workflow_id = ?1 AND "
        "done_time IS NULL)");
    finish.BindText(1, workflow_id);
    finish.BindTime(2, now);
    return finish.Run();
  });
}

absl::Status PatientsRepository::CompensationFailed(const std::string& workflow_id,
                                                    CompensationAction action,
                                                    const std::string& error,
                                                    absl::Time next_attempt) {
  return database_.InTransaction([&](Database::Session& session) -> absl::Status {
    Statement& failed = session.Prepare(
        "UPDATE compensations SET attempts = attempts + 1, last_error = ?3, "
        "next_attempt_time = ?4 WHERE workflow_id = ?1 AND action = ?2 AND done_time IS NULL");
    failed.BindText(1, workflow_id);
    failed.BindInt(2, static_cast<int>(action));
    failed.BindText(3, error);
    failed.BindTime(4, next_attempt);
    return failed.Run();
  });
}

absl::StatusOr<std::vector<DueCompensation>> PatientsRepository::DueCompensations(absl::Time now,
                                                                                  int limit) {
  std::vector<DueCompensation> due;
  absl::Status status = database_.WithSession([&](Database::Session& session) -> absl::Status {
    Statement& select = session.Prepare(
        "SELECT c.workflow_id, w.patient_id, c.action, c.attempts FROM compensations c "
        "JOIN death_workflows w ON w.workflow_id = c.workflow_id "
        "WHERE c.done_time IS NULL AND c.next_attempt_time <= ?1 "
        "ORDER BY c.next_attempt_time LIMIT ?2");
    select.BindTime(1, now);
    select.BindInt(2, limit);
    return select.ForEachRow([&](const Statement& row) {
      due.push_back({row.ColumnText(0), row.ColumnText(1),
                     static_cast<CompensationAction>(row.ColumnInt(2)),
                     static_cast<int>(row.ColumnInt(3))});
    });
  });
  if (!status.ok()) return status;
  return due;
}

absl::StatusOr<int> PatientsRepository::PendingCompensationCount() {
  int count = 0;
  absl::Status status = database_.WithSession([&](Database::Session& session) -> absl::Status {
    Statement& select =
        session.Prepare("SELECT count(*) FROM compensations WHERE done_time IS NULL");
    absl::StatusOr<bool> row = select.Step();
    if (!row.ok()) return row.status();
    count = static_cast<int>(select.ColumnInt(0));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return count;
}

absl::StatusOr<bool> PatientsRepository::IsPending(const std::string& workflow_id) {
  bool pending = false;
  RETURN_IF_ERROR(database_.WithSession([&](Database::Session& session) -> absl::Status {
    Statement& select =
        session.Prepare("SELECT 1 FROM death_workflows WHERE workflow_id = ?1 AND state = 1");
    select.BindText(1, workflow_id);
    ASSIGN_OR_RETURN(pending, select.Step());
    return absl::OkStatus();
  }));
  return pending;
}

absl::StatusOr<std::vector<DeathWorkflowRow>> PatientsRepository::PendingWorkflows(
    absl::Time older_than) {
  std::vector<DeathWorkflowRow> rows;
  absl::Status status = database_.WithSession([&](Database::Session& session) -> absl::Status {
    Statement& select = session.Prepare(
        "SELECT workflow_id, patient_id, time_of_death, cause FROM death_workflows "
        "WHERE state = 1 AND update_time < ?1 ORDER BY update_time LIMIT 100");
    select.BindTime(1, older_than);
    return select.ForEachRow([&](const Statement& row) {
      DeathWorkflowRow workflow;
      workflow.workflow_id = row.ColumnText(0);
      workflow.patient_id = row.ColumnText(1);
      workflow.time_of_death = row.ColumnTime(2);
      workflow.cause = row.ColumnText(3);
      rows.push_back(std::move(workflow));
    });
  });
  if (!status.ok()) return status;
  return rows;
}

}  // namespace patients
