// The services' repositories and the constraints of their schemas, on SQLite and PostgreSQL.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "appointments/appointments_repository.h"
#include "morgue/morgue_repository.h"
#include "patients/patients_repository.h"
#include "server_kit/rpc_support.h"
#include "server_kit/serve.h"
#include "support/hospital_fixture.h"
#include "support/test_database.h"
#include "testing_support/service_process.h"

namespace {

using server_kit::Database;
using testing_support::OpenDatabase;
using testing_support::PostgresEngine;
using testing_support::SqliteEngine;
using testing_support::TestDatabase;

// Admits a patient as the asynchronous workflow's consumer does, in its own transaction.
void AdmitFromEvent(Database& database, const std::string& patient_id, const std::string& event_id,
                    absl::Time now) {
  REQUIRE(database
              .InTransaction([&](Database::Session& session) {
                morgue::AdmitResult result;
                return morgue::MorgueRepository::AdmitIn(session, patient_id, event_id, now,
                                                         "cause", morgue::Confirmation::kConfirmed,
                                                         now, result);
              })
              .ok());
}

TEMPLATE_TEST_CASE("the schema allows one pending or completed death per patient", "[storage]",
                   SqliteEngine, PostgresEngine) {
  // The transaction around BeginDeath already refuses a second death; the index is what holds
  // when code changes, so it is checked on its own.
  TestDatabase database(TestType::kEngine, patients::Migrations());
  const auto insert_workflow = [&](const std::string& workflow_id, int state) {
    return database->InTransaction([&](Database::Session& session) -> absl::Status {
      return session.Exec(absl::StrCat(
          "INSERT INTO death_workflows (workflow_id, patient_id, time_of_death, cause, state, "
          "create_time, update_time) VALUES ('",
          workflow_id, "', 'p-1', 0, 'x', ", state, ", 0, 0)"));
    });
  };
  REQUIRE(database
              ->InTransaction([](Database::Session& session) {
                return session.Exec(
                    "INSERT INTO patients (patient_id, given_name, family_name, date_of_birth, "
                    "status, create_time, update_time) VALUES ('p-1', 'A', 'B', '1990-01-01', 1, "
                    "0, 0)");
              })
              .ok());
  REQUIRE(insert_workflow("w-compensated", 4).ok());
  REQUIRE(insert_workflow("w-pending", 1).ok());
  CHECK(insert_workflow("w-second-pending", 1).code() == absl::StatusCode::kAlreadyExists);
  CHECK(insert_workflow("w-completed", 2).code() == absl::StatusCode::kAlreadyExists);
  CHECK(insert_workflow("w-compensating", 3).ok());
}

TEST_CASE("the death workflow finds a patient's workflows through an index", "[storage]") {
  // Without one, SQLite walked every completed workflow on each RecordDeath.
  testing_support::TempDir dir;
  auto database = OpenDatabase(dir.path() + "/patients.db", patients::Migrations());
  std::string plan;
  REQUIRE(database
              ->WithSession([&](Database::Session& session) -> absl::Status {
                server_kit::Statement& explain = session.Prepare(
                    "EXPLAIN QUERY PLAN SELECT state, result FROM death_workflows "
                    "WHERE patient_id = ?1 AND state IN (1, 2, 3)");
                return explain.ForEachRow(
                    [&](const server_kit::Statement& row) { plan += row.ColumnText(3); });
              })
              .ok());
  CHECK_THAT(plan, Catch::Contains("workflows_by_patient (patient_id=?"));
}

TEMPLATE_TEST_CASE("morgue: one admission per patient, reopened for a new workflow after a cancel",
                   "[storage][morgue]", SqliteEngine, PostgresEngine) {
  TestDatabase database(TestType::kEngine, morgue::Migrations());
  morgue::MorgueRepository repository(*database);
  const absl::Time now = absl::Now();
  auto first = repository.Admit("p", "w1", now, "cause", now);
  REQUIRE(first.ok());
  auto repeat = repository.Admit("p", "w2", now, "cause", now);
  REQUIRE(repeat.ok());
  CHECK(repeat->already_admitted);
  CHECK(repeat->admission.workflow_id() == "w1");
  CHECK(*repository.CancelWorkflow("p", "w2", now) == false);  // Not w2's admission.
  CHECK(*repository.CancelWorkflow("p", "w1", now) == true);
  CHECK(*repository.CancelWorkflow("p", "w1", now) == false);  // Idempotent.
  CHECK(repository.Admit("p", "w1", now, "cause", now).status().code() ==
        absl::StatusCode::kAborted);  // A late request of the undone workflow.
  auto reopened = repository.Admit("p", "w3", now, "cause", now);
  REQUIRE(reopened.ok());
  CHECK(reopened->admission.admission_id() == first->admission.admission_id());
  CHECK(reopened->admission.status() == hospital::morgue::v1::ADMITTED);
  auto page = repository.List("", 10, hospital::morgue::v1::ADMISSION_STATUS_UNSPECIFIED);
  CHECK(page->items.size() == 1);
}

TEMPLATE_TEST_CASE("morgue: releasing a body against every phase of a death", "[storage][morgue]",
                   SqliteEngine, PostgresEngine) {
  // An operator releases the body in each phase of a synchronous death. A release is allowed
  // only once the death can no longer be undone (the workflow completed and confirmed the
  // admission), so an undo never meets a released body and a living patient's body is never
  // recorded as released.
  enum class Phase { kBefore, kPending, kCompensating, kCompleted, kUndone };
  struct Row {
    Phase phase;
    absl::StatusCode release;
  };
  for (const Row& row : {Row{Phase::kBefore, absl::StatusCode::kNotFound},
                         Row{Phase::kPending, absl::StatusCode::kFailedPrecondition},
                         Row{Phase::kCompensating, absl::StatusCode::kFailedPrecondition},
                         Row{Phase::kCompleted, absl::StatusCode::kOk},
                         Row{Phase::kUndone, absl::StatusCode::kFailedPrecondition}}) {
    INFO("phase " << static_cast<int>(row.phase));
    TestDatabase database(TestType::kEngine, morgue::Migrations());
    morgue::MorgueRepository repository(*database);
    const absl::Time now = absl::Now();
    std::string admission_id = "not-admitted-yet";
    const auto release = [&] {
      const auto released = repository.Release(admission_id, "Funeral Home", now);
      CHECK(released.status().code() == row.release);
      if (row.phase == Phase::kPending || row.phase == Phase::kCompensating) {
        CHECK(server_kit::ErrorReasonOf(released.status()) == morgue::kReasonAdmissionProvisional);
        CHECK_THAT(std::string(released.status().message()), Catch::Contains("\"w\""));
      }
    };
    if (row.phase == Phase::kBefore) release();
    const auto admitted = repository.Admit("p", "w", now, "cause", now);
    REQUIRE(admitted.ok());
    CHECK(admitted->admission.provisional());
    admission_id = admitted->admission.admission_id();
    if (row.phase == Phase::kPending) release();
    if (row.phase == Phase::kCompleted) {
      const auto confirmed = repository.Confirm("p", "w");
      REQUIRE(confirmed.ok());
      CHECK_FALSE(confirmed->admission.provisional());
      CHECK(repository.Confirm("p", "w")->already_confirmed);  // Idempotent.
      release();
      CHECK(repository.GetByPatient("p")->status() == hospital::morgue::v1::RELEASED);
      continue;
    }
    // The death fails: its undo is owed (compensating), then delivered (undone).
    if (row.phase == Phase::kCompensating) release();
    const auto undone = repository.CancelWorkflow("p", "w", now);
    REQUIRE(undone.ok());
    CHECK(*undone);  // The undo was never blocked by a release.
    if (row.phase == Phase::kUndone) release();
    CHECK(repository.GetByPatient("p")->status() == hospital::morgue::v1::CANCELLED);
    // A late confirmation of the undone workflow is refused and changes nothing.
    CHECK(repository.Confirm("p", "w").status().code() == absl::StatusCode::kFailedPrecondition);
    CHECK(repository.GetByPatient("p")->status() == hospital::morgue::v1::CANCELLED);
  }
}

TEMPLATE_TEST_CASE("morgue: confirming names what is wrong", "[storage][morgue]", SqliteEngine,
                   PostgresEngine) {
  TestDatabase database(TestType::kEngine, morgue::Migrations());
  morgue::MorgueRepository repository(*database);
  const absl::Time now = absl::Now();
  CHECK(repository.Confirm("nobody", "w").status().code() == absl::StatusCode::kNotFound);
  REQUIRE(repository.Admit("p", "w1", now, "cause", now).ok());
  const auto other = repository.Confirm("p", "w2");
  CHECK(other.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(other.status().message()), Catch::Contains("provisional for workflow"));
  CHECK(repository.GetByPatient("p")->provisional());  // Unchanged.
  // An admission made from an event is final at once: nothing to confirm, releasable.
  AdmitFromEvent(*database, "q", "e1", now);
  CHECK_FALSE(repository.GetByPatient("q")->provisional());
  CHECK(repository.Confirm("q", "w9")->already_confirmed);
  CHECK(repository.Release(repository.GetByPatient("q")->admission_id(), "Home", now).ok());
}

TEMPLATE_TEST_CASE("morgue: a workflow admits one patient", "[storage][morgue]", SqliteEngine,
                   PostgresEngine) {
  TestDatabase database(TestType::kEngine, morgue::Migrations());
  morgue::MorgueRepository repository(*database);
  const absl::Time now = absl::Now();
  REQUIRE(repository.Admit("p1", "w1", now, "cause", now).ok());
  const auto other = repository.Admit("p2", "w1", now, "cause", now);
  CHECK(other.status().code() == absl::StatusCode::kAlreadyExists);
  CHECK_THAT(std::string(other.status().message()), Catch::StartsWith("workflow_id:"));
  CHECK(repository.GetByPatient("p2").status().code() == absl::StatusCode::kNotFound);
  CHECK(repository.Admit("p1", "w1", now, "cause", now)->already_admitted);  // Still idempotent.
  // The schema holds it too, whatever the code above does.
  CHECK(database
            ->InTransaction([](Database::Session& session) {
              return session.Exec(
                  "INSERT INTO admissions (admission_id, patient_id, workflow_id, time_of_death, "
                  "cause, status, admit_time) VALUES ('a-x', 'p3', 'w1', 0, 'x', 1, 0)");
            })
            .code() == absl::StatusCode::kAlreadyExists);
}

TEMPLATE_TEST_CASE("appointments: cancel for a patient is idempotent and undoable", "[storage]",
                   SqliteEngine, PostgresEngine) {
  TestDatabase database(TestType::kEngine, appointments::Migrations());
  appointments::AppointmentsRepository repository(*database);
  const absl::Time now = absl::Now();
  for (int i = 1; i <= 3; ++i) {
    REQUIRE(
        repository.Schedule({absl::StrCat("a", i), "p", now + absl::Hours(i), "Dr. Snow", ""}, now)
            .ok());
  }
  REQUIRE(repository.Schedule({"past", "p", now + absl::Minutes(1), "Dr. Snow", ""}, now).ok());
  const absl::Time later = now + absl::Minutes(30);  // "past" is now in the past.
  auto cancelled = repository.CancelForPatient("p", "w1", "deceased", true, later);
  REQUIRE(cancelled.ok());
  CHECK(cancelled->cancelled.size() == 3);
  auto again = repository.CancelForPatient("p", "w1", "deceased", true, later);
  CHECK(again->replayed);
  CHECK(again->cancelled.size() == 3);
  CHECK(repository.Schedule({"new", "p", later + absl::Hours(9), "Dr. Snow", ""}, later)
            .status()
            .code() == absl::StatusCode::kFailedPrecondition);
  auto restored = repository.RestoreForPatient("p", "w1", later);
  REQUIRE(restored.ok());
  CHECK(restored->size() == 3);
  CHECK(repository.Schedule({"new", "p", later + absl::Hours(9), "Dr. Snow", ""}, later).ok());
  CHECK(repository.CancelForPatient("p", "w1", "deceased", true, later).status().code() ==
        absl::StatusCode::kAborted);
  // An undo that arrives before its cancellation blocks the cancellation.
  CHECK(repository.RestoreForPatient("p", "w2", later)->empty());
  CHECK(repository.CancelForPatient("p", "w2", "deceased", true, later).status().code() ==
        absl::StatusCode::kAborted);
}

TEMPLATE_TEST_CASE(
    "appointments: undoing a death restores only what it cancelled, and only the future",
    "[storage]", SqliteEngine, PostgresEngine) {
  TestDatabase database(TestType::kEngine, appointments::Migrations());
  appointments::AppointmentsRepository repository(*database);
  const absl::Time now = absl::Now();
  for (const char* id : {"soon", "kept", "user"}) {
    const absl::Duration from_now = std::string(id) == "soon" ? absl::Minutes(10) : absl::Hours(5);
    REQUIRE(repository.Schedule({id, "p", now + from_now, "Dr. Snow", ""}, now).ok());
  }
  REQUIRE(repository.CancelForPatient("p", "w1", "patient deceased", true, now)->cancelled.size() ==
          3);
  // While the death is pending, the patient's family cancels one appointment themselves.
  bool changed = false;
  const auto cancelled = repository.Cancel(changed, "user", "family request", now);
  REQUIRE(cancelled.ok());
  CHECK(changed);
  CHECK(cancelled->cancel_reason() == "family request");
  // The death is undone after "soon" has passed.
  const absl::Time later = now + absl::Minutes(20);
  const auto restored = repository.RestoreForPatient("p", "w1", later);
  REQUIRE(restored.ok());
  REQUIRE(restored->size() == 1);
  CHECK(restored->front().appointment_id() == "kept");
  CHECK(repository.Get("kept")->status() == hospital::appointments::v1::SCHEDULED);
  // The user's cancellation was acknowledged: it stands.
  CHECK(repository.Get("user")->status() == hospital::appointments::v1::CANCELLED);
  CHECK(repository.Get("user")->cancel_reason() == "family request");
  // The past is not booked again.
  CHECK(repository.Get("soon")->status() == hospital::appointments::v1::CANCELLED);
}

TEMPLATE_TEST_CASE("appointments: a patient's own writes against every phase of a death",
                   "[storage]", SqliteEngine, PostgresEngine) {
  // In each phase of a death the patient cancels an appointment and tries to book another. A
  // cancellation the service acknowledged must stand whatever happens to the death afterwards;
  // booking is refused exactly while the patient is recorded as deceased.
  enum class Phase { kBefore, kPending, kCompleted, kUndone };
  struct Row {
    Phase phase;
    bool may_book;
  };
  for (const Row& row : {Row{Phase::kBefore, true}, Row{Phase::kPending, false},
                         Row{Phase::kCompleted, false}, Row{Phase::kUndone, true}}) {
    const int phase = static_cast<int>(row.phase);
    INFO("phase " << phase);
    TestDatabase database(TestType::kEngine, appointments::Migrations());
    appointments::AppointmentsRepository repository(*database);
    const absl::Time now = absl::Now();
    REQUIRE(repository.Schedule({"mine", "p", now + absl::Hours(5), "Dr. Snow", ""}, now).ok());
    // The patient's two writes, made in the phase under test.
    const auto act = [&] {
      bool changed = false;
      REQUIRE(repository.Cancel(changed, "mine", "patient's own reason", now).ok());
      const auto booked = repository.Schedule(
          {absl::StrCat("new-", phase), "p", now + absl::Hours(9), "Dr. Snow", ""}, now);
      CHECK(booked.ok() == row.may_book);
    };
    if (row.phase == Phase::kBefore) act();
    REQUIRE(repository.CancelForPatient("p", "w", "patient deceased", true, now).ok());
    if (row.phase == Phase::kPending || row.phase == Phase::kCompleted) act();
    // Pending ends in an undo here (the worst case for the patient's write); completed does not.
    if (row.phase != Phase::kCompleted) REQUIRE(repository.RestoreForPatient("p", "w", now).ok());
    if (row.phase == Phase::kUndone) act();
    const auto mine = repository.Get("mine");
    REQUIRE(mine.ok());
    CHECK(mine->status() == hospital::appointments::v1::CANCELLED);
    CHECK(mine->cancel_reason() == "patient's own reason");
  }
}

TEST_CASE("validation names the field", "[validation]") {
  CHECK(server_kit::ValidateId("patient_id", "").message() == "patient_id: is required");
  CHECK_THAT(std::string(server_kit::ValidateId("patient_id", "a b").message()),
             Catch::StartsWith("patient_id: must be 1 to 64"));
  CHECK(server_kit::ValidateId("patient_id", std::string(64, 'a')).ok());
  CHECK_FALSE(server_kit::ValidateId("patient_id", std::string(65, 'a')).ok());
  CHECK(server_kit::ValidateText("cause", "ok", 1, 10).ok());
  CHECK_FALSE(server_kit::ValidateText("cause", "\xff\xfe", 1, 10).ok());
  CHECK_FALSE(server_kit::ValidateText("cause", std::string("a\0b", 3), 1, 10).ok());
  CHECK(server_kit::ValidateText("cause", "a\tb\nc", 1, 10).ok());
  CHECK_THAT(std::string(server_kit::ValidateText("cause", "a\x7f", 1, 10).message()),
             Catch::Contains("control character at byte 1"));                    // DEL
  CHECK_FALSE(server_kit::ValidateText("cause", "a\xc2\x85", 1, 10).ok());       // U+0085 (C1)
  CHECK_FALSE(server_kit::ValidateText("cause", "\xc2\x9f", 1, 10).ok());        // U+009F (C1)
  CHECK(server_kit::ValidateText("cause", "caf\xc3\xa9 \xc2\xa0", 1, 10).ok());  // é, NBSP
  // A quoted value is cut at a character boundary: 60 ASCII bytes, then a 2-byte 'é' whose
  // second byte is the 62nd, where a cut at 61 bytes would fall.
  const std::string quoted =
      server_kit::Quote(std::string(60, 'a') + "\xc3\xa9" + std::string(10, 'b'));
  CHECK(quoted == "\"" + std::string(60, 'a') + "...\"");
  CHECK(server_kit::ValidateText("quoted", quoted, 1, 100).ok());  // Still valid UTF-8.
  CHECK(server_kit::DecodePageToken("page_token", "").value().empty());
  CHECK(server_kit::DecodePageToken("page_token", server_kit::EncodePageToken("p-7")).value() ==
        "p-7");
  CHECK(server_kit::DecodePageToken("page_token", "bm9wZQ").status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(server_kit::ValidatePageSize("page_size", 0).value() == 50);
  CHECK_FALSE(server_kit::ValidatePageSize("page_size", 501).ok());
}

}  // namespace
