// The synchronous death workflow's decisions, with scripted downstreams and a real database in
// a temporary directory.
#include "integration/sync/synchronous_death_workflow.h"

#include <atomic>
#include <deque>
#include <functional>
#include <optional>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "base/sync.h"
#include "base/testing/fake_environment.h"
#include "support/test_database.h"
#include "testing_support/service_process.h"

namespace integration::sync {
namespace {

using patients::Migrations;
using testing_support::PostgresEngine;
using testing_support::SqliteEngine;

// Answers each call at once with the next scripted status for its method (OK when none).
// Thread-safe: the background pass works on several workflows at once.
class ScriptedDownstreams final : public Downstreams {
 public:
  std::deque<absl::Status> admit;
  std::deque<absl::Status> cancel;
  std::deque<absl::Status> undo_admit;
  std::deque<absl::Status> undo_cancel;
  std::deque<absl::Status> confirm;
  std::string rejecting;  // What RejectingTarget reports.
  std::atomic<int> admit_calls{0};
  std::atomic<int> cancel_calls{0};
  std::atomic<int> undo_admit_calls{0};
  std::atomic<int> undo_cancel_calls{0};
  std::atomic<int> confirm_calls{0};
  // Runs before an undo of an admission is answered, with the patient's id.
  std::function<void(const std::string&)> on_undo_admit;
  // The parent deadline of every undo of an admission.
  std::vector<absl::Time> undo_admit_deadlines;

  std::string RejectingTarget() override { return rejecting; }

  void AdmitDeceased(const morgue_v1::AdmitDeceasedRequest& request, absl::Time,
                     Done<morgue_v1::AdmitDeceasedResponse> done) override {
    ++admit_calls;
    morgue_v1::AdmitDeceasedResponse response;
    response.mutable_admission()->set_admission_id(absl::StrCat("adm-", request.patient_id()));
    done(Next(admit), response);
  }
  void CancelPatientAppointments(
      const appointments_v1::CancelPatientAppointmentsRequest&, absl::Time,
      Done<appointments_v1::CancelPatientAppointmentsResponse> done) override {
    ++cancel_calls;
    appointments_v1::CancelPatientAppointmentsResponse response;
    response.add_cancelled()->set_appointment_id("apt-1");
    done(Next(cancel), response);
  }
  void CancelAdmission(const morgue_v1::CancelAdmissionRequest& request, absl::Time deadline,
                       Done<morgue_v1::CancelAdmissionResponse> done) override {
    ++undo_admit_calls;
    {
      base::MutexLock lock(&mutex_);
      undo_admit_deadlines.push_back(deadline);
    }
    if (on_undo_admit) on_undo_admit(request.patient_id());
    done(Next(undo_admit), {});
  }
  void RestorePatientAppointments(
      const appointments_v1::RestorePatientAppointmentsRequest&, absl::Time,
      Done<appointments_v1::RestorePatientAppointmentsResponse> done) override {
    ++undo_cancel_calls;
    done(Next(undo_cancel), {});
  }
  void ConfirmAdmission(const morgue_v1::ConfirmAdmissionRequest&, absl::Time,
                        Done<morgue_v1::ConfirmAdmissionResponse> done) override {
    ++confirm_calls;
    done(Next(confirm), {});
  }

 private:
  absl::Status Next(std::deque<absl::Status>& script) {
    base::MutexLock lock(&mutex_);
    if (script.empty()) return absl::OkStatus();
    absl::Status status = script.front();
    script.pop_front();
    return status;
  }

  base::Mutex mutex_;
};

const absl::Status kDown(absl::StatusCode::kUnavailable, "connection refused");

struct Fixture {
  explicit Fixture(server_kit::Engine engine) : database(engine, Migrations()) {
    repository.emplace(*database);
    workflow.emplace(*repository, downstreams, env.environment(), registry);
    v1::Patient patient;
    patient.set_patient_id("p-1");
    patient.set_given_name("Ada");
    patient.set_family_name("Lovelace");
    patient.set_date_of_birth("1990-12-10");
    REQUIRE(repository->Create(patient, env.Now()).ok());
  }

  absl::StatusOr<v1::RecordDeathResponse> Record() {
    return workflow->RecordDeath({"p-1", env.Now() - absl::Hours(1), "stroke"},
                                 absl::InfiniteFuture());
  }
  v1::PatientStatus Status() { return repository->Get("p-1")->status(); }
  int Pending() { return *repository->PendingCompensationCount(); }
  int ConfirmationsOwed() { return *repository->PendingConfirmationCount(); }

  base::testing::FakeEnvironment env;
  prometheus::Registry registry;
  testing_support::TestDatabase database;
  std::optional<PatientsRepository> repository;
  ScriptedDownstreams downstreams;
  std::optional<SynchronousDeathWorkflow> workflow;
};

TEMPLATE_TEST_CASE("both downstreams succeed: the death is completed and replayed", "[workflow]",
                   SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  absl::StatusOr<v1::RecordDeathResponse> recorded = f.Record();
  REQUIRE(recorded.ok());
  CHECK(recorded->morgue().admission_id() == "adm-p-1");
  CHECK(recorded->cancelled_appointments_size() == 1);
  CHECK(f.Status() == v1::DECEASED);
  absl::StatusOr<v1::RecordDeathResponse> again = f.Record();
  REQUIRE(again.ok());
  CHECK(again->replayed());
  CHECK(again->workflow_id() == recorded->workflow_id());
  CHECK(f.downstreams.admit_calls == 1);  // The replay did not call anyone.
  // The provisional admission was confirmed before the caller heard OK, once.
  CHECK(f.downstreams.confirm_calls == 1);
  CHECK(f.ConfirmationsOwed() == 0);
}

TEMPLATE_TEST_CASE("a confirmation the morgue does not acknowledge is retried until it is",
                   "[workflow]", SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  f.downstreams.confirm.push_back(kDown);
  f.downstreams.confirm.push_back(kDown);
  absl::StatusOr<v1::RecordDeathResponse> recorded = f.Record();
  REQUIRE(recorded.ok());  // The death is recorded whatever happens to the confirmation.
  CHECK(f.Status() == v1::DECEASED);
  CHECK(f.ConfirmationsOwed() == 1);
  f.workflow->ReconcileOnce();  // Not due yet: backed off.
  CHECK(f.downstreams.confirm_calls == 1);
  f.env.Advance(absl::Minutes(1));
  f.workflow->ReconcileOnce();  // Fails again, backs off again.
  CHECK(f.downstreams.confirm_calls == 2);
  CHECK(f.ConfirmationsOwed() == 1);
  f.env.Advance(absl::Minutes(1));
  f.workflow->ReconcileOnce();
  CHECK(f.downstreams.confirm_calls == 3);
  CHECK(f.ConfirmationsOwed() == 0);
  f.env.Advance(absl::Minutes(1));
  f.workflow->ReconcileOnce();
  CHECK(f.downstreams.confirm_calls == 3);  // Acknowledged: never sent again.
}

TEMPLATE_TEST_CASE("a confirmation the morgue refuses for good is given up and no longer owed",
                   "[workflow]", SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  f.downstreams.confirm.push_back(
      absl::FailedPreconditionError("admission was cancelled by its workflow"));
  REQUIRE(f.Record().ok());
  CHECK(f.ConfirmationsOwed() == 0);
  f.env.Advance(absl::Minutes(1));
  f.workflow->ReconcileOnce();
  CHECK(f.downstreams.confirm_calls == 1);
}

TEMPLATE_TEST_CASE("a failed death never confirms its admission", "[workflow]", SqliteEngine,
                   PostgresEngine) {
  Fixture f(TestType::kEngine);
  f.downstreams.cancel.push_back(kDown);
  REQUIRE_FALSE(f.Record().ok());
  f.env.Advance(absl::Minutes(1));
  f.workflow->ReconcileOnce();
  CHECK(f.downstreams.confirm_calls == 0);
  CHECK(f.ConfirmationsOwed() == 0);
  CHECK(f.downstreams.undo_admit_calls >= 1);
}

TEMPLATE_TEST_CASE("a failed downstream compensates both sides and restores the patient",
                   "[workflow]", SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  f.downstreams.admit.push_back(kDown);
  absl::StatusOr<v1::RecordDeathResponse> recorded = f.Record();
  REQUIRE_FALSE(recorded.ok());
  CHECK(recorded.status().code() == absl::StatusCode::kUnavailable);
  CHECK_THAT(std::string(recorded.status().message()), Catch::Contains("morgue"));
  CHECK_THAT(std::string(recorded.status().message()),
             !Catch::Contains("appointments ("));  // Only the failed one is named.
  CHECK(f.Status() == v1::ALIVE);
  CHECK(f.downstreams.undo_admit_calls == 1);
  CHECK(f.downstreams.undo_cancel_calls == 1);
  CHECK(f.Pending() == 0);
  // A new attempt is allowed and succeeds.
  REQUIRE(f.Record().ok());
  CHECK(f.Status() == v1::DECEASED);
}

TEMPLATE_TEST_CASE("a failed undo call is kept and retried in the background with backoff",
                   "[workflow]", SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  f.downstreams.cancel.push_back(kDown);
  f.downstreams.undo_admit = {kDown, kDown};
  f.env.random().Push(0.999);  // Full jitter: each backoff 99.9 % of its ceiling.
  REQUIRE_FALSE(f.Record().ok());
  CHECK(f.Pending() == 1);
  // A new RecordDeath must wait for the undo, or a late undo could cancel its admission.
  absl::StatusOr<v1::RecordDeathResponse> blocked = f.Record();
  CHECK(blocked.status().code() == absl::StatusCode::kUnavailable);
  CHECK_THAT(std::string(blocked.status().message()), Catch::Contains("still being undone"));

  f.env.Advance(absl::Milliseconds(400));
  f.workflow->ReconcileOnce();  // Not due yet (499.5 ms backoff).
  CHECK(f.downstreams.undo_admit_calls == 1);
  f.env.Advance(absl::Milliseconds(100));
  f.workflow->ReconcileOnce();  // Due; fails again; the ceiling doubles: 999 ms.
  CHECK(f.downstreams.undo_admit_calls == 2);
  CHECK(f.Pending() == 1);
  f.env.Advance(absl::Milliseconds(998));
  f.workflow->ReconcileOnce();
  CHECK(f.downstreams.undo_admit_calls == 2);
  f.env.Advance(absl::Milliseconds(1));
  f.workflow->ReconcileOnce();  // Succeeds.
  CHECK(f.downstreams.undo_admit_calls == 3);
  CHECK(f.Pending() == 0);
  REQUIRE(f.Record().ok());
}

TEMPLATE_TEST_CASE("both owed undo calls are kept until each has succeeded", "[workflow]",
                   SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  f.downstreams.admit.push_back(kDown);
  f.downstreams.undo_admit = {kDown};
  f.downstreams.undo_cancel = {kDown, kDown};
  f.env.random().Push(0.999);
  REQUIRE_FALSE(f.Record().ok());
  CHECK(f.Pending() == 2);
  f.env.Advance(absl::Milliseconds(500));
  f.workflow->ReconcileOnce();  // The morgue's undo succeeds; the appointments' fails again.
  CHECK(f.downstreams.undo_admit_calls == 2);
  CHECK(f.downstreams.undo_cancel_calls == 2);
  CHECK(f.Pending() == 1);
  f.env.Advance(absl::Seconds(1));
  f.workflow->ReconcileOnce();
  CHECK(f.downstreams.undo_admit_calls == 2);  // Done: not sent again.
  CHECK(f.downstreams.undo_cancel_calls == 3);
  CHECK(f.Pending() == 0);
}

TEMPLATE_TEST_CASE(
    "when the undo cannot be recorded, the answer says the outcome is not settled, and the "
    "background pass settles it",
    "[workflow]", SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  f.downstreams.admit.push_back(kDown);
  // Storage refuses to move a workflow to COMPENSATING (as a full disk would refuse any write).
  const bool postgres = TestType::kEngine == server_kit::Engine::kPostgres;
  REQUIRE(f.database
              ->InTransaction([&](server_kit::Database::Session& session) {
                return session.Exec(
                    postgres
                        ? "CREATE FUNCTION refuse_compensation() RETURNS trigger LANGUAGE plpgsql "
                          "AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$;"
                          "CREATE TRIGGER no_compensation BEFORE UPDATE OF state ON "
                          "death_workflows FOR EACH ROW WHEN (NEW.state = 3) EXECUTE FUNCTION "
                          "refuse_compensation()"
                        : "CREATE TRIGGER no_compensation BEFORE UPDATE OF state ON "
                          "death_workflows WHEN NEW.state = 3 BEGIN SELECT RAISE(ABORT, "
                          "'injected'); END");
              })
              .ok());
  const absl::StatusOr<v1::RecordDeathResponse> recorded = f.Record();
  REQUIRE(recorded.status().code() == absl::StatusCode::kUnavailable);
  CHECK_THAT(std::string(recorded.status().message()),
             Catch::Contains("will be settled in the background"));
  CHECK(f.downstreams.undo_admit_calls == 0);  // Nothing was undone: it is still pending.
  REQUIRE(f.database
              ->InTransaction([&](server_kit::Database::Session& session) {
                return session.Exec(postgres ? "DROP TRIGGER no_compensation ON death_workflows"
                                             : "DROP TRIGGER no_compensation");
              })
              .ok());
  f.env.Advance(absl::Seconds(1));
  f.workflow->ReconcileOnce();  // Rolled forward: the morgue answers now.
  CHECK(f.Status() == v1::DECEASED);
  const absl::StatusOr<v1::RecordDeathResponse> again = f.Record();
  REQUIRE(again.ok());
  CHECK(again->replayed());
}

TEMPLATE_TEST_CASE("the background pass leaves alone the undo calls a request is making",
                   "[workflow]", SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  f.downstreams.admit.push_back(kDown);
  int passes = 0;
  // While the request sends its own undo call, a background pass runs: the owed calls are due,
  // but the workflow is the request's.
  f.downstreams.on_undo_admit = [&](const std::string&) {
    if (passes++ == 0) f.workflow->ReconcileOnce();
  };
  REQUIRE_FALSE(f.Record().ok());
  CHECK(passes == 1);
  CHECK(f.downstreams.undo_admit_calls == 1);
  CHECK(f.downstreams.undo_cancel_calls == 1);
  CHECK(f.Pending() == 0);
}

TEMPLATE_TEST_CASE("one stalled recovery does not hold up another, and each has a deadline",
                   "[workflow]", SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  v1::Patient second;
  second.set_patient_id("p-2");
  second.set_given_name("Grace");
  second.set_family_name("Hopper");
  second.set_date_of_birth("1906-12-09");
  REQUIRE(f.repository->Create(second, f.env.Now()).ok());
  // Two failed deaths whose undo of the admission failed too: both owed.
  f.downstreams.admit = {kDown, kDown};
  f.downstreams.undo_admit = {kDown, kDown};
  f.env.random().Push(0.0);  // Due again at once.
  REQUIRE_FALSE(f.Record().ok());
  REQUIRE_FALSE(
      f.workflow
          ->RecordDeath({"p-2", f.env.Now() - absl::Hours(1), "stroke"}, absl::InfiniteFuture())
          .ok());
  REQUIRE(f.Pending() == 2);
  // Each undo stalls until the other has been sent too: a pass that took them one at a time
  // would wait out the first one's stall (10 s here) and fail the check.
  base::Mutex mutex;
  base::CondVar arrived_changed;
  int arrived = 0;
  std::atomic<int> stalled_for_good{0};
  f.downstreams.on_undo_admit = [&](const std::string&) {
    base::MutexLock lock(&mutex);
    ++arrived;
    arrived_changed.SignalAll();
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    while (arrived < 2) {
      if (arrived_changed.WaitWithDeadline(&mutex, give_up)) {
        ++stalled_for_good;
        break;
      }
    }
  };
  const absl::Time pass_start = f.env.Now();
  f.workflow->ReconcileOnce();
  CHECK(stalled_for_good == 0);
  CHECK(f.Pending() == 0);
  // The pass's calls end 10 s (recovery_deadline) after it started, not never.
  CHECK(f.downstreams.undo_admit_deadlines.back() == pass_start + absl::Seconds(10));
}

TEMPLATE_TEST_CASE("an undo the downstream refuses for good is not retried forever", "[workflow]",
                   SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  f.downstreams.cancel.push_back(kDown);
  f.downstreams.undo_admit.push_back(absl::FailedPreconditionError("body released"));
  REQUIRE_FALSE(f.Record().ok());
  CHECK(f.Pending() == 0);
}

TEMPLATE_TEST_CASE("a pending workflow left by a crash is rolled forward once its claim lapses",
                   "[workflow]", SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  // What a process that died after step 1 leaves behind: its claim runs for 3 s more.
  absl::StatusOr<BeginDeathResult> begun = f.repository->BeginDeath(
      "p-1", "w-orphan", f.env.Now() - absl::Hours(1), "stroke", f.env.Now(),
      {"a-replica-that-died", f.env.Now() + absl::Seconds(3)});
  REQUIRE(begun.ok());
  REQUIRE(begun->kind == BeginDeathResult::Kind::kStarted);
  absl::StatusOr<v1::RecordDeathResponse> while_pending = f.Record();
  CHECK(while_pending.status().code() == absl::StatusCode::kAborted);

  // While the claim holds, its owner may still be driving it (another replica, alive).
  f.env.Advance(absl::Seconds(1));
  f.workflow->ReconcileOnce();
  CHECK(f.downstreams.admit_calls == 0);
  f.env.Advance(absl::Seconds(2));
  f.workflow->ReconcileOnce();
  CHECK(f.downstreams.admit_calls == 1);
  absl::StatusOr<v1::RecordDeathResponse> replayed = f.Record();
  REQUIRE(replayed.ok());
  CHECK(replayed->replayed());
  CHECK(replayed->workflow_id() == "w-orphan");
}

TEMPLATE_TEST_CASE(
    "replicas on one database: an owed undo is sent by the claim's owner only, and taken over "
    "when the claim lapses",
    "[workflow]", SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);  // Replica A.
  ScriptedDownstreams b_downstreams;
  SynchronousDeathWorkflowOptions b_options;
  b_options.owner = "replica-b";
  prometheus::Registry b_registry;
  SynchronousDeathWorkflow replica_b(*f.repository, b_downstreams, f.env.environment(), b_registry,
                                     b_options);
  // A's request fails, and so does its undo of the admission: owed, due at once.
  f.downstreams.admit.push_back(kDown);
  f.downstreams.undo_admit = {kDown, kDown};
  f.env.random().Push(0.0);
  REQUIRE_FALSE(f.Record().ok());
  REQUIRE(f.Pending() == 1);

  // The request's claim still holds: B leaves the call to A.
  replica_b.ReconcileOnce();
  CHECK(b_downstreams.undo_admit_calls == 0);
  // A's pass sends it again (and fails again); B, passing meanwhile, sends nothing.
  f.env.random().Push(0.0);
  f.downstreams.on_undo_admit = [&](const std::string&) { replica_b.ReconcileOnce(); };
  f.workflow->ReconcileOnce();
  CHECK(f.downstreams.undo_admit_calls == 2);
  CHECK(b_downstreams.undo_admit_calls == 0);
  REQUIRE(f.Pending() == 1);

  // A stops passing (it died): once its pass's claim (10 s + 5 s) has lapsed, B takes over.
  f.downstreams.on_undo_admit = nullptr;
  f.env.Advance(absl::Seconds(14));
  replica_b.ReconcileOnce();
  CHECK(b_downstreams.undo_admit_calls == 0);
  f.env.Advance(absl::Seconds(2));
  replica_b.ReconcileOnce();
  CHECK(b_downstreams.undo_admit_calls == 1);
  CHECK(f.Pending() == 0);
  CHECK(f.downstreams.undo_admit_calls == 2);
}

TEMPLATE_TEST_CASE("an open breaker fails the death at once and changes nothing", "[workflow]",
                   SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  f.downstreams.rejecting = "morgue";
  absl::StatusOr<v1::RecordDeathResponse> recorded = f.Record();
  CHECK(recorded.status().code() == absl::StatusCode::kUnavailable);
  CHECK_THAT(std::string(recorded.status().message()), Catch::Contains("morgue is unavailable"));
  CHECK(f.Status() == v1::ALIVE);
  CHECK(f.downstreams.admit_calls + f.downstreams.cancel_calls == 0);
  CHECK(f.Pending() == 0);
  f.downstreams.rejecting.clear();
  CHECK(f.Record().ok());
}

TEMPLATE_TEST_CASE("a death before the date of birth is refused and changes nothing", "[workflow]",
                   SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  absl::StatusOr<v1::RecordDeathResponse> recorded =
      f.workflow->RecordDeath({"p-1", absl::FromUnixSeconds(0), "stroke"}, absl::InfiniteFuture());
  CHECK(recorded.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(recorded.status().message()), Catch::StartsWith("time_of_death"));
  CHECK(f.Status() == v1::ALIVE);
  CHECK(f.downstreams.admit_calls == 0);
}

}  // namespace
}  // namespace integration::sync
