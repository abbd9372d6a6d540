#include "morgue/morgue_repository.h"

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "messaging/inbox.h"
#include "server_kit/rpc_support.h"
#include "server_kit/serve.h"

namespace morgue {
namespace {

using server_kit::Database;
using server_kit::Statement;

constexpr char kColumns[] =
    "admission_id, patient_id, workflow_id, time_of_death, cause, status, admit_time, "
    "funeral_home, release_time, cancel_time, confirmed";

Admission ReadAdmission(const Statement& row) {
  Admission admission;
  admission.set_admission_id(row.ColumnText(0));
  admission.set_patient_id(row.ColumnText(1));
  admission.set_workflow_id(row.ColumnText(2));
  *admission.mutable_time_of_death() = server_kit::ToProtoTime(row.ColumnTime(3));
  admission.set_cause(row.ColumnText(4));
  admission.set_status(static_cast<AdmissionStatus>(row.ColumnInt(5)));
  *admission.mutable_admit_time() = server_kit::ToProtoTime(row.ColumnTime(6));
  if (!row.ColumnIsNull(7)) admission.set_funeral_home(row.ColumnText(7));
  if (!row.ColumnIsNull(8)) {
    *admission.mutable_release_time() = server_kit::ToProtoTime(row.ColumnTime(8));
  }
  if (!row.ColumnIsNull(9)) {
    *admission.mutable_cancel_time() = server_kit::ToProtoTime(row.ColumnTime(9));
  }
  // Only a standing admission can be waiting for its workflow; an undone one is just CANCELLED.
  admission.set_provisional(row.ColumnInt(10) == 0 &&
                            admission.status() == hospital::morgue::v1::ADMITTED);
  return admission;
}

// Reads at most one admission by `column` ("admission_id" or "patient_id").
absl::StatusOr<std::optional<Admission>> FindBy(Database::Session& session,
                                                const std::string& column,
                                                const std::string& value) {
  Statement& select = session.Prepare(
      absl::StrCat("SELECT ", kColumns, " FROM admissions WHERE ", column, " = ?1"));
  select.BindText(1, value);
  absl::StatusOr<bool> row = select.Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<Admission>();
  return std::optional<Admission>(ReadAdmission(select));
}

}  // namespace

const server_kit::Schema& Migrations() {
  static const auto* const migrations = new server_kit::Schema{
      /*sqlite=*/{
          R"sql(
        CREATE TABLE admissions (
          admission_id  TEXT PRIMARY KEY,
          patient_id    TEXT NOT NULL UNIQUE,
          workflow_id   TEXT NOT NULL,
          time_of_death INTEGER NOT NULL,
          cause         TEXT NOT NULL,
          status        INTEGER NOT NULL CHECK (status IN (1, 2, 3)),
          admit_time    INTEGER NOT NULL,
          funeral_home  TEXT,
          release_time  INTEGER,
          cancel_time   INTEGER
        );
        CREATE INDEX admissions_by_status ON admissions (status, admission_id);
        -- Workflows whose admission was undone: a late AdmitDeceased of one is refused.
        CREATE TABLE cancelled_workflows (
          workflow_id TEXT PRIMARY KEY,
          patient_id  TEXT NOT NULL,
          cancel_time INTEGER NOT NULL
        );
      )sql",
          // v2: a workflow admits one patient. A workflow id sent again for another patient is a
          // bug in the caller, refused (AdmitDeceased checks first, to say so clearly).
          R"sql(
        CREATE UNIQUE INDEX admissions_by_workflow ON admissions (workflow_id);
      )sql",
          // v3: the inbox of the asynchronous death workflow's events.
          messaging::kInboxMigration,
          // v4: an admission made by a synchronous death workflow is provisional (0) until the
          // workflow completes and confirms it; only then may the body be released, so that undoing
          // the workflow never meets a released body. Admissions made before this version were
          // made under the old protocol and count as confirmed.
          R"sql(
        ALTER TABLE admissions ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 1
          CHECK (confirmed IN (0, 1));
      )sql",
      },
      /*postgres=*/{
          // v1: the tables of SQLite's v1-v4.
          R"sql(
        CREATE TABLE admissions (
          admission_id  TEXT COLLATE "C" PRIMARY KEY,
          patient_id    TEXT COLLATE "C" NOT NULL UNIQUE,
          workflow_id   TEXT COLLATE "C" NOT NULL,
          time_of_death BIGINT NOT NULL,
          cause         TEXT NOT NULL,
          status        INTEGER NOT NULL CHECK (status IN (1, 2, 3)),
          admit_time    BIGINT NOT NULL,
          funeral_home  TEXT,
          release_time  BIGINT,
          cancel_time   BIGINT,
          confirmed     INTEGER NOT NULL DEFAULT 1 CHECK (confirmed IN (0, 1))
        );
        CREATE INDEX admissions_by_status ON admissions (status, admission_id);
        CREATE UNIQUE INDEX admissions_by_workflow ON admissions (workflow_id);
        CREATE TABLE cancelled_workflows (
          workflow_id TEXT COLLATE "C" PRIMARY KEY,
          patient_id  TEXT COLLATE "C" NOT NULL,
          cancel_time BIGINT NOT NULL
        );
      )sql",
          messaging::kPostgresInboxMigration,
      }};
  return *migrations;
}

absl::Status MorgueRepository::AdmitIn(Database::Session& session, const std::string& patient_id,
                                       const std::string& workflow_id, absl::Time time_of_death,
                                       const std::string& cause, Confirmation confirmation,
                                       absl::Time now, AdmitResult& result) {
  const int confirmed = confirmation == Confirmation::kConfirmed ? 1 : 0;
  Statement& cancelled =
      session.Prepare("SELECT 1 FROM cancelled_workflows WHERE workflow_id = ?1");
  cancelled.BindText(1, workflow_id);
  absl::StatusOr<bool> was_cancelled = cancelled.Step();
  if (!was_cancelled.ok()) return was_cancelled.status();
  if (*was_cancelled) {
    return absl::AbortedError(absl::StrCat("workflow_id: workflow \"", workflow_id,
                                           "\" was cancelled; start a new one to admit"));
  }
  ASSIGN_OR_RETURN(const std::optional<Admission> by_workflow,
                   FindBy(session, "workflow_id", workflow_id));
  if (by_workflow.has_value() && by_workflow->patient_id() != patient_id) {
    return absl::AlreadyExistsError(
        absl::StrCat("workflow_id: workflow \"", workflow_id,
                     "\" already admitted another patient; a workflow admits one patient"));
  }
  absl::StatusOr<std::optional<Admission>> existing = FindBy(session, "patient_id", patient_id);
  if (!existing.ok()) return existing.status();
  if (existing->has_value() && (*existing)->status() != hospital::morgue::v1::CANCELLED) {
    result.admission = **existing;
    result.already_admitted = true;
    return absl::OkStatus();
  }
  if (existing->has_value()) {
    Statement& reopen = session.Prepare(
        "UPDATE admissions SET workflow_id = ?2, time_of_death = ?3, cause = ?4, status = 1, "
        "admit_time = ?5, cancel_time = NULL, confirmed = ?6 WHERE admission_id = ?1");
    reopen.BindText(1, (*existing)->admission_id());
    reopen.BindText(2, workflow_id);
    reopen.BindTime(3, time_of_death);
    reopen.BindText(4, cause);
    reopen.BindTime(5, now);
    reopen.BindInt(6, confirmed);
    if (absl::Status updated = reopen.Run(); !updated.ok()) return updated;
  } else {
    Statement& insert = session.Prepare(
        "INSERT INTO admissions (admission_id, patient_id, workflow_id, time_of_death, cause, "
        "status, admit_time, confirmed) VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7)");
    insert.BindText(1, server_kit::NewId());
    insert.BindText(2, patient_id);
    insert.BindText(3, workflow_id);
    insert.BindTime(4, time_of_death);
    insert.BindText(5, cause);
    insert.BindTime(6, now);
    insert.BindInt(7, confirmed);
    if (absl::Status inserted = insert.Run(); !inserted.ok()) return inserted;
  }
  absl::StatusOr<std::optional<Admission>> admitted = FindBy(session, "patient_id", patient_id);
  if (!admitted.ok()) return admitted.status();
  result.admission = **admitted;
  return absl::OkStatus();
}

absl::StatusOr<bool> MorgueRepository::WasCancelled(Database::Session& session,
                                                    const std::string& workflow_id) {
  Statement& cancelled =
      session.Prepare("SELECT 1 FROM cancelled_workflows WHERE workflow_id = ?1");
  cancelled.BindText(1, workflow_id);
  return cancelled.Step();
}

absl::StatusOr<AdmitResult> MorgueRepository::Admit(const std::string& patient_id,
                                                    const std::string& workflow_id,
                                                    absl::Time time_of_death,
                                                    const std::string& cause, absl::Time now) {
  AdmitResult result;
  absl::Status status = database_.InTransaction([&](Database::Session& session) {
    return AdmitIn(session, patient_id, workflow_id, time_of_death, cause,
                   Confirmation::kProvisional, now, result);
  });
  if (!status.ok()) return status;
  return result;
}

absl::StatusOr<Admission> MorgueRepository::GetById(const std::string& admission_id) {
  std::optional<Admission> found;
  absl::Status status = database_.WithSession([&](Database::Session& session) -> absl::Status {
    absl::StatusOr<std::optional<Admission>> admission =
        FindBy(session, "admission_id", admission_id);
    if (!admission.ok()) return admission.status();
    found = *std::move(admission);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  if (!found) {
    return absl::NotFoundError(absl::StrCat("admission_id: no admission \"", admission_id, "\""));
  }
  return *std::move(found);
}

absl::StatusOr<Admission> MorgueRepository::GetByPatient(const std::string& patient_id) {
  std::optional<Admission> found;
  absl::Status status = database_.WithSession([&](Database::Session& session) -> absl::Status {
    absl::StatusOr<std::optional<Admission>> admission = FindBy(session, "patient_id", patient_id);
    if (!admission.ok()) return admission.status();
    found = *std::move(admission);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  if (!found) {
    return absl::NotFoundError(
        absl::StrCat("patient_id: no admission of patient \"", patient_id, "\""));
  }
  return *std::move(found);
}

absl::StatusOr<AdmissionPage> MorgueRepository::List(const std::string& after_id, int limit,
                                                     AdmissionStatus status_filter) {
  AdmissionPage page;
  absl::Status status = database_.WithSession([&](Database::Session& session) -> absl::Status {
    Statement& select = session.Prepare(
        absl::StrCat("SELECT ", kColumns,
                     " FROM admissions WHERE admission_id > ?1 AND (?2 = 0 OR status = ?2) "
                     "ORDER BY admission_id LIMIT ?3"));
    select.BindText(1, after_id);
    select.BindInt(2, status_filter);
    ASSIGN_OR_RETURN(page, server_kit::ReadPage<Admission>(
                               select, 3, limit, ReadAdmission,
                               [](const Admission& last) { return last.admission_id(); }));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return page;
}

absl::StatusOr<Admission> MorgueRepository::Release(const std::string& admission_id,
                                                    const std::string& funeral_home,
                                                    absl::Time now) {
  Admission released;
  absl::Status status = database_.InTransaction([&](Database::Session& session) -> absl::Status {
    absl::StatusOr<std::optional<Admission>> admission =
        FindBy(session, "admission_id", admission_id);
    if (!admission.ok()) return admission.status();
    if (!admission->has_value()) {
      return absl::NotFoundError(absl::StrCat("admission_id: no admission \"", admission_id, "\""));
    }
    if ((*admission)->status() != hospital::morgue::v1::ADMITTED) {
      return absl::FailedPreconditionError(
          absl::StrCat("admission \"", admission_id, "\" is ",
                       hospital::morgue::v1::AdmissionStatus_Name((*admission)->status()),
                       "; only an ADMITTED body can be released"));
    }
    if ((*admission)->provisional()) {
      return server_kit::WithErrorReason(
          absl::FailedPreconditionError(absl::StrCat(
              "admission \"", admission_id, "\" is provisional: the death workflow \"",
              (*admission)->workflow_id(),
              "\" that made it has not completed and may still be undone; retry once the death "
              "is recorded (usually within a second)")),
          kReasonAdmissionProvisional);
    }
    Statement& update = session.Prepare(
        "UPDATE admissions SET status = 2, funeral_home = ?2, release_time = ?3 "
        "WHERE admission_id = ?1");
    update.BindText(1, admission_id);
    update.BindText(2, funeral_home);
    update.BindTime(3, now);
    if (absl::Status updated = update.Run(); !updated.ok()) return updated;
    absl::StatusOr<std::optional<Admission>> after = FindBy(session, "admission_id", admission_id);
    if (!after.ok()) return after.status();
    released = **after;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return released;
}

absl::StatusOr<ConfirmResult> MorgueRepository::Confirm(const std::string& patient_id,
                                                        const std::string& workflow_id) {
  ConfirmResult result;
  absl::Status status = database_.InTransaction([&](Database::Session& session) -> absl::Status {
    ASSIGN_OR_RETURN(const std::optional<Admission> admission,
                     FindBy(session, "patient_id", patient_id));
    if (!admission.has_value()) {
      return absl::NotFoundError(
          absl::StrCat("patient_id: no admission of patient \"", patient_id, "\""));
    }
    if (admission->status() == hospital::morgue::v1::CANCELLED) {
      return absl::FailedPreconditionError(
          absl::StrCat("admission \"", admission->admission_id(), "\" of patient \"", patient_id,
                       "\" was cancelled by its workflow and cannot be confirmed"));
    }
    if (!admission->provisional()) {
      // Confirmed before, or made final by an event; a workflow that found it standing (its
      // AdmitDeceased answered already_admitted) confirms it too.
      result.admission = *admission;
      result.already_confirmed = true;
      return absl::OkStatus();
    }
    if (admission->workflow_id() != workflow_id) {
      return absl::FailedPreconditionError(absl::StrCat(
          "admission \"", admission->admission_id(), "\" is provisional for workflow \"",
          admission->workflow_id(), "\", not \"", workflow_id, "\""));
    }
    Statement& confirm =
        session.Prepare("UPDATE admissions SET confirmed = 1 WHERE admission_id = ?1");
    confirm.BindText(1, admission->admission_id());
    RETURN_IF_ERROR(confirm.Run());
    result.admission = *admission;
    result.admission.set_provisional(false);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return result;
}

absl::StatusOr<bool> MorgueRepository::CancelWorkflow(const std::string& patient_id,
                                                      const std::string& workflow_id,
                                                      absl::Time now) {
  bool cancelled = false;
  absl::Status status = database_.InTransaction([&](Database::Session& session) -> absl::Status {
    Statement& remember = session.Prepare(
        "INSERT INTO cancelled_workflows (workflow_id, patient_id, cancel_time) "
        "VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING");
    remember.BindText(1, workflow_id);
    remember.BindText(2, patient_id);
    remember.BindTime(3, now);
    if (absl::Status inserted = remember.Run(); !inserted.ok()) return inserted;
    absl::StatusOr<std::optional<Admission>> admission = FindBy(session, "patient_id", patient_id);
    if (!admission.ok()) return admission.status();
    if (!admission->has_value() || (*admission)->workflow_id() != workflow_id) {
      return absl::OkStatus();  // This workflow admitted nobody: nothing to undo.
    }
    if ((*admission)->status() == hospital::morgue::v1::RELEASED) {
      return absl::FailedPreconditionError(
          absl::StrCat("admission \"", (*admission)->admission_id(),
                       "\" was already released to a funeral home and cannot be cancelled"));
    }
    if ((*admission)->status() == hospital::morgue::v1::CANCELLED) return absl::OkStatus();
    Statement& update = session.Prepare(
        "UPDATE admissions SET status = 3, cancel_time = ?2 WHERE admission_id = ?1");
    update.BindText(1, (*admission)->admission_id());
    update.BindTime(2, now);
    if (absl::Status updated = update.Run(); !updated.ok()) return updated;
    cancelled = true;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return cancelled;
}

}  // namespace morgue
