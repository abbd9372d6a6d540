#include "appointments/appointments_repository.h"

#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/status.h"
#include "messaging/inbox.h"
#include "server_kit/rpc_support.h"

namespace appointments {
namespace {

using server_kit::Database;
using server_kit::Statement;

constexpr int kCancelled = hospital::appointments::v1::CANCELLED;
constexpr int kReverted = 2;

constexpr char kColumns[] =
    "appointment_id, patient_id, scheduled_time, clinician, purpose, status, cancel_reason, "
    "cancel_time, create_time";

Appointment ReadAppointment(const Statement& row) {
  Appointment appointment;
  appointment.set_appointment_id(row.ColumnText(0));
  appointment.set_patient_id(row.ColumnText(1));
  *appointment.mutable_scheduled_time() = server_kit::ToProtoTime(row.ColumnTime(2));
  appointment.set_clinician(row.ColumnText(3));
  appointment.set_purpose(row.ColumnText(4));
  appointment.set_status(static_cast<AppointmentStatus>(row.ColumnInt(5)));
  if (!row.ColumnIsNull(6)) appointment.set_cancel_reason(row.ColumnText(6));
  if (!row.ColumnIsNull(7)) {
    *appointment.mutable_cancel_time() = server_kit::ToProtoTime(row.ColumnTime(7));
  }
  *appointment.mutable_create_time() = server_kit::ToProtoTime(row.ColumnTime(8));
  return appointment;
}

// Runs `select` (already bound) and collects every row.
absl::StatusOr<std::vector<Appointment>> ReadAll(Statement& select) {
  std::vector<Appointment> rows;
  absl::Status status =
      select.ForEachRow([&](const Statement& row) { rows.push_back(ReadAppointment(row)); });
  if (!status.ok()) return status;
  return rows;
}

absl::StatusOr<std::optional<Appointment>> FindById(Database::Session& session,
                                                    const std::string& appointment_id) {
  Statement& select = session.Prepare(
      absl::StrCat("SELECT ", kColumns, " FROM appointments WHERE appointment_id = ?1"));
  select.BindText(1, appointment_id);
  absl::StatusOr<std::vector<Appointment>> rows = ReadAll(select);
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::optional<Appointment>();
  return std::optional<Appointment>(std::move(rows->front()));
}

// The appointments cancelled by `workflow_id` that no user has cancelled since.
absl::StatusOr<std::vector<Appointment>> CancelledBy(Database::Session& session,
                                                     const std::string& workflow_id) {
  Statement& select = session.Prepare(
      absl::StrCat("SELECT ", kColumns, " FROM appointments WHERE cancelled_by_workflow = ?1 ",
                   "ORDER BY scheduled_time, appointment_id"));
  select.BindText(1, workflow_id);
  return ReadAll(select);
}

// The appointments a workflow cancelled that are still its own (no user has cancelled them
// since) and still in the future after `now`: what undoing it restores.
absl::StatusOr<std::vector<Appointment>> RestorableFor(Database::Session& session,
                                                       const std::string& workflow_id,
                                                       absl::Time now) {
  Statement& select = session.Prepare(
      absl::StrCat("SELECT ", kColumns, " FROM appointments WHERE cancelled_by_workflow = ?1 ",
                   "AND scheduled_time > ?2 ORDER BY scheduled_time, appointment_id"));
  select.BindText(1, workflow_id);
  select.BindTime(2, now);
  return ReadAll(select);
}

struct Cancellation {
  std::string patient_id;
  int state = 0;
};

absl::StatusOr<std::optional<Cancellation>> FindCancellation(Database::Session& session,
                                                             const std::string& workflow_id) {
  Statement& select =
      session.Prepare("SELECT patient_id, state FROM patient_cancellations WHERE workflow_id = ?1");
  select.BindText(1, workflow_id);
  absl::StatusOr<bool> row = select.Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<Cancellation>();
  return std::optional<Cancellation>(
      Cancellation{select.ColumnText(0), static_cast<int>(select.ColumnInt(1))});
}

absl::Status WrongPatient(const std::string& workflow_id) {
  return absl::InvalidArgumentError(
      absl::StrCat("workflow_id: workflow \"", workflow_id, "\" belongs to another patient"));
}

}  // namespace

const server_kit::Schema& Migrations() {
  static const auto* const migrations =
      new server_kit::Schema{/*sqlite=*/{
                                 R"sql(
        -- Patient-wide cancellations made by death workflows (state 1 active, 2 reverted).
        CREATE TABLE patient_cancellations (
          workflow_id      TEXT PRIMARY KEY,
          patient_id       TEXT NOT NULL,
          reason           TEXT NOT NULL,
          patient_deceased INTEGER NOT NULL CHECK (patient_deceased IN (0, 1)),
          state            INTEGER NOT NULL CHECK (state IN (1, 2)),
          create_time      INTEGER NOT NULL,
          revert_time      INTEGER
        );
        CREATE INDEX cancellations_by_patient ON patient_cancellations (patient_id, state);
        CREATE TABLE appointments (
          appointment_id        TEXT PRIMARY KEY,
          patient_id            TEXT NOT NULL,
          scheduled_time        INTEGER NOT NULL,
          clinician             TEXT NOT NULL,
          purpose               TEXT NOT NULL,
          status                INTEGER NOT NULL CHECK (status IN (1, 2)),
          cancel_reason         TEXT,
          cancel_time           INTEGER,
          cancelled_by_workflow TEXT REFERENCES patient_cancellations (workflow_id),
          create_time           INTEGER NOT NULL
        );
        CREATE INDEX appointments_by_patient
          ON appointments (patient_id, scheduled_time, appointment_id);
        CREATE INDEX appointments_by_workflow ON appointments (cancelled_by_workflow);
      )sql",
                                 // v2: the inbox of the asynchronous death workflow's events.
                                 messaging::kInboxMigration,
                             },
                             /*postgres=*/{
                                 // v1: the tables of SQLite's v1.
                                 R"sql(
        CREATE TABLE patient_cancellations (
          workflow_id      TEXT COLLATE "C" PRIMARY KEY,
          patient_id       TEXT COLLATE "C" NOT NULL,
          reason           TEXT NOT NULL,
          patient_deceased INTEGER NOT NULL CHECK (patient_deceased IN (0, 1)),
          state            INTEGER NOT NULL CHECK (state IN (1, 2)),
          create_time      BIGINT NOT NULL,
          revert_time      BIGINT
        );
        CREATE INDEX cancellations_by_patient ON patient_cancellations (patient_id, state);
        CREATE TABLE appointments (
          appointment_id        TEXT COLLATE "C" PRIMARY KEY,
          patient_id            TEXT COLLATE "C" NOT NULL,
          scheduled_time        BIGINT NOT NULL,
          clinician             TEXT NOT NULL,
          purpose               TEXT NOT NULL,
          status                INTEGER NOT NULL CHECK (status IN (1, 2)),
          cancel_reason         TEXT,
          cancel_time           BIGINT,
          cancelled_by_workflow TEXT COLLATE "C" REFERENCES patient_cancellations (workflow_id),
          create_time           BIGINT NOT NULL
        );
        CREATE INDEX appointments_by_patient
          ON appointments (patient_id, scheduled_time, appointment_id);
        CREATE INDEX appointments_by_workflow ON appointments (cancelled_by_workflow);
      )sql",
                                 messaging::kPostgresInboxMigration,
                             }};
  return *migrations;
}

absl::StatusOr<Appointment> AppointmentsRepository::Schedule(const NewAppointment& appointment,
                                                             absl::Time now) {
  Appointment scheduled;
  absl::Status status = database_.InTransaction([&](Database::Session& session) -> absl::Status {
    Statement& deceased = session.Prepare(
        "SELECT 1 FROM patient_cancellations WHERE patient_id = ?1 AND state = 1 "
        "AND patient_deceased = 1");
    deceased.BindText(1, appointment.patient_id);
    absl::StatusOr<bool> is_deceased = deceased.Step();
    if (!is_deceased.ok()) return is_deceased.status();
    if (*is_deceased) {
      return absl::FailedPreconditionError(
          absl::StrCat("patient_id: patient \"", appointment.patient_id,
                       "\" is deceased; no appointments can be scheduled"));
    }
    Statement& insert = session.Prepare(
        "INSERT INTO appointments (appointment_id, patient_id, scheduled_time, clinician, "
        "purpose, status, create_time) VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)");
    insert.BindText(1, appointment.appointment_id);
    insert.BindText(2, appointment.patient_id);
    insert.BindTime(3, appointment.scheduled_time);
    insert.BindText(4, appointment.clinician);
    insert.BindText(5, appointment.purpose);
    insert.BindTime(6, now);
    if (absl::Status inserted = insert.Run(); !inserted.ok()) {
      if (absl::IsAlreadyExists(inserted)) {
        return absl::AlreadyExistsError(absl::StrCat(
            "appointment_id: appointment \"", appointment.appointment_id, "\" already exists"));
      }
      return inserted;
    }
    absl::StatusOr<std::optional<Appointment>> row = FindById(session, appointment.appointment_id);
    if (!row.ok()) return row.status();
    scheduled = **row;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return scheduled;
}

absl::StatusOr<Appointment> AppointmentsRepository::Get(const std::string& appointment_id) {
  std::optional<Appointment> found;
  absl::Status status = database_.WithSession([&](Database::Session& session) -> absl::Status {
    absl::StatusOr<std::optional<Appointment>> row = FindById(session, appointment_id);
    if (!row.ok()) return row.status();
    found = *std::move(row);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  if (!found) {
    return absl::NotFoundError(
        absl::StrCat("appointment_id: no appointment \"", appointment_id, "\""));
  }
  return *std::move(found);
}

absl::StatusOr<AppointmentPage> AppointmentsRepository::List(const std::string& patient_id,
                                                             const std::string& position, int limit,
                                                             AppointmentStatus status_filter) {
  // A position is "<scheduled time in Unix microseconds>/<appointment id>".
  std::int64_t after_time = std::numeric_limits<std::int64_t>::min();
  std::string after_id;
  if (!position.empty()) {
    std::pair<std::string, std::string> parts = absl::StrSplit(position, absl::MaxSplits('/', 1));
    if (!absl::SimpleAtoi(parts.first, &after_time) || parts.second.empty()) {
      return absl::InvalidArgumentError("page_token: malformed page token");
    }
    after_id = parts.second;
  }
  AppointmentPage page;
  absl::Status status = database_.WithSession([&](Database::Session& session) -> absl::Status {
    Statement& select = session.Prepare(
        absl::StrCat("SELECT ", kColumns,
                     " FROM appointments WHERE patient_id = ?1 AND (?4 = 0 OR status = ?4) AND "
                     "(scheduled_time > ?2 OR (scheduled_time = ?2 AND appointment_id > ?3)) "
                     "ORDER BY scheduled_time, appointment_id LIMIT ?5"));
    select.BindText(1, patient_id);
    select.BindInt(2, after_time);
    select.BindText(3, after_id);
    select.BindInt(4, status_filter);
    ASSIGN_OR_RETURN(page,
                     server_kit::ReadPage<Appointment>(
                         select, 5, limit, ReadAppointment, [](const Appointment& last) {
                           return absl::StrCat(
                               absl::ToUnixMicros(server_kit::FromProtoTime(last.scheduled_time())),
                               "/", last.appointment_id());
                         }));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return page;
}

absl::StatusOr<Appointment> AppointmentsRepository::Cancel(bool& changed,
                                                           const std::string& appointment_id,
                                                           const std::string& reason,
                                                           absl::Time now) {
  Appointment result;
  changed = false;
  absl::Status status = database_.InTransaction([&](Database::Session& session) -> absl::Status {
    absl::StatusOr<std::optional<Appointment>> row = FindById(session, appointment_id);
    if (!row.ok()) return row.status();
    if (!row->has_value()) {
      return absl::NotFoundError(
          absl::StrCat("appointment_id: no appointment \"", appointment_id, "\""));
    }
    if ((*row)->status() == kCancelled) {
      // Cancelled by a death workflow that may still be undone: the user's cancellation takes
      // it over, so that undoing the workflow (which restores only what it cancelled itself)
      // leaves it cancelled, as the user asked.
      Statement& take_over = session.Prepare(
          "UPDATE appointments SET cancel_reason = ?2, cancel_time = ?3, "
          "cancelled_by_workflow = NULL WHERE appointment_id = ?1 AND "
          "cancelled_by_workflow IS NOT NULL");
      take_over.BindText(1, appointment_id);
      take_over.BindText(2, reason);
      take_over.BindTime(3, now);
      RETURN_IF_ERROR(take_over.Run());
      changed = take_over.changes() == 1;
      ASSIGN_OR_RETURN(const std::optional<Appointment> after, FindById(session, appointment_id));
      result = *after;
      return absl::OkStatus();
    }
    if (server_kit::FromProtoTime((*row)->scheduled_time()) <= now) {
      return absl::FailedPreconditionError(absl::StrCat(
          "appointment \"", appointment_id, "\" has already taken place and cannot be cancelled"));
    }
    Statement& update = session.Prepare(
        "UPDATE appointments SET status = 2, cancel_reason = ?2, cancel_time = ?3 "
        "WHERE appointment_id = ?1");
    update.BindText(1, appointment_id);
    update.BindText(2, reason);
    update.BindTime(3, now);
    if (absl::Status updated = update.Run(); !updated.ok()) return updated;
    changed = true;
    absl::StatusOr<std::optional<Appointment>> after = FindById(session, appointment_id);
    if (!after.ok()) return after.status();
    result = **after;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return result;
}

absl::Status AppointmentsRepository::CancelForPatientIn(
    Database::Session& session, const std::string& patient_id, const std::string& workflow_id,
    const std::string& reason, bool patient_deceased, absl::Time now, PatientCancellation& result) {
  absl::StatusOr<std::optional<Cancellation>> existing = FindCancellation(session, workflow_id);
  if (!existing.ok()) return existing.status();
  if (existing->has_value()) {
    if ((*existing)->patient_id != patient_id) return WrongPatient(workflow_id);
    if ((*existing)->state == kReverted) {
      return absl::AbortedError(
          absl::StrCat("workflow_id: workflow \"", workflow_id, "\" was undone; start a new one"));
    }
    absl::StatusOr<std::vector<Appointment>> cancelled = CancelledBy(session, workflow_id);
    if (!cancelled.ok()) return cancelled.status();
    result.cancelled = *std::move(cancelled);
    result.replayed = true;
    return absl::OkStatus();
  }
  Statement& insert = session.Prepare(
      "INSERT INTO patient_cancellations (workflow_id, patient_id, reason, patient_deceased, "
      "state, create_time) VALUES (?1, ?2, ?3, ?4, 1, ?5)");
  insert.BindText(1, workflow_id);
  insert.BindText(2, patient_id);
  insert.BindText(3, reason);
  insert.BindInt(4, patient_deceased ? 1 : 0);
  insert.BindTime(5, now);
  if (absl::Status inserted = insert.Run(); !inserted.ok()) return inserted;
  Statement& update = session.Prepare(
      "UPDATE appointments SET status = 2, cancel_reason = ?3, cancel_time = ?4, "
      "cancelled_by_workflow = ?2 WHERE patient_id = ?1 AND status = 1 AND scheduled_time > ?4");
  update.BindText(1, patient_id);
  update.BindText(2, workflow_id);
  update.BindText(3, reason);
  update.BindTime(4, now);
  if (absl::Status updated = update.Run(); !updated.ok()) return updated;
  absl::StatusOr<std::vector<Appointment>> cancelled = CancelledBy(session, workflow_id);
  if (!cancelled.ok()) return cancelled.status();
  result.cancelled = *std::move(cancelled);
  return absl::OkStatus();
}

absl::StatusOr<bool> AppointmentsRepository::WasUndone(Database::Session& session,
                                                       const std::string& workflow_id) {
  ASSIGN_OR_RETURN(const std::optional<Cancellation> existing,
                   FindCancellation(session, workflow_id));
  return existing.has_value() && existing->state == kReverted;
}

absl::StatusOr<PatientCancellation> AppointmentsRepository::CancelForPatient(
    const std::string& patient_id, const std::string& workflow_id, const std::string& reason,
    bool patient_deceased, absl::Time now) {
  PatientCancellation result;
  absl::Status status = database_.InTransaction([&](Database::Session& session) {
    return CancelForPatientIn(session, patient_id, workflow_id, reason, patient_deceased, now,
                              result);
  });
  if (!status.ok()) return status;
  return result;
}

absl::StatusOr<std::vector<Appointment>> AppointmentsRepository::RestoreForPatient(
    const std::string& patient_id, const std::string& workflow_id, absl::Time now) {
  std::vector<Appointment> restored;
  absl::Status status = database_.InTransaction([&](Database::Session& session) -> absl::Status {
    absl::StatusOr<std::optional<Cancellation>> existing = FindCancellation(session, workflow_id);
    if (!existing.ok()) return existing.status();
    if (!existing->has_value()) {
      // Nothing to undo; remember the workflow so that a late cancellation of it is refused.
      Statement& tombstone = session.Prepare(
          "INSERT INTO patient_cancellations (workflow_id, patient_id, reason, patient_deceased, "
          "state, create_time, revert_time) VALUES (?1, ?2, 'undone before it ran', 0, 2, ?3, ?3)");
      tombstone.BindText(1, workflow_id);
      tombstone.BindText(2, patient_id);
      tombstone.BindTime(3, now);
      return tombstone.Run();
    }
    if ((*existing)->patient_id != patient_id) return WrongPatient(workflow_id);
    if ((*existing)->state == kReverted) return absl::OkStatus();
    // Appointments whose time has passed meanwhile stay cancelled: restoring them would book
    // the past.
    absl::StatusOr<std::vector<Appointment>> cancelled = RestorableFor(session, workflow_id, now);
    if (!cancelled.ok()) return cancelled.status();
    Statement& update = session.Prepare(
        "UPDATE appointments SET status = 1, cancel_reason = NULL, cancel_time = NULL, "
        "cancelled_by_workflow = NULL WHERE cancelled_by_workflow = ?1 AND scheduled_time > ?2");
    update.BindText(1, workflow_id);
    update.BindTime(2, now);
    if (absl::Status updated = update.Run(); !updated.ok()) return updated;
    Statement& revert = session.Prepare(
        "UPDATE patient_cancellations SET state = 2, revert_time = ?2 WHERE workflow_id = ?1");
    revert.BindText(1, workflow_id);
    revert.BindTime(2, now);
    if (absl::Status reverted = revert.Run(); !reverted.ok()) return reverted;
    for (Appointment& appointment : *cancelled) {
      appointment.set_status(hospital::appointments::v1::SCHEDULED);
      appointment.clear_cancel_reason();
      appointment.clear_cancel_time();
      restored.push_back(std::move(appointment));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return restored;
}

}  // namespace appointments
