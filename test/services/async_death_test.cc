// The asynchronous death's storage and event handling, without a broker: what RecordDeath
// commits with its event, and what the morgue's and appointments' handlers do with events.
#include <catch2/catch.hpp>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "appointments/appointments_repository.h"
#include "appointments/patient_died_handler.h"
#include "base/testing/fake_environment.h"
#include "hospital/patients/v1/events.pb.h"
#include "integration/local_death_workflow.h"
#include "messaging/inbox.h"
#include "messaging/outbox.h"
#include "morgue/morgue_repository.h"
#include "morgue/patient_died_handler.h"
#include "patients/patients_repository.h"
#include "server_kit/database.h"
#include "server_kit/rpc_support.h"
#include "support/hospital_fixture.h"
#include "support/test_database.h"
#include "testing_support/service_process.h"

namespace {

using server_kit::Database;
using testing_support::PostgresEngine;
using testing_support::SqliteEngine;
namespace patients_v1 = hospital::patients::v1;

const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);

patients_v1::Patient NewPatient(const std::string& id) {
  patients_v1::Patient patient;
  patient.set_patient_id(id);
  patient.set_given_name("Ada");
  patient.set_family_name("Lovelace");
  patient.set_date_of_birth("1990-12-10");
  return patient;
}

TEMPLATE_TEST_CASE("an async death commits the patient's state, a completed workflow and one event",
                   "[async]", SqliteEngine, PostgresEngine) {
  testing_support::TestDatabase database(TestType::kEngine, patients::Migrations());
  patients::PatientsRepository repository(*database);
  REQUIRE(repository.Create(NewPatient("p-1"), kNow).ok());
  base::testing::FakeClock clock(kNow);
  prometheus::Registry metrics;
  int commits = 0;
  integration::LocalDeathWorkflow workflow(repository, clock, metrics,
                                           integration::DeathDelivery::kOutbox, [&] { ++commits; });

  const patients::DeathRequest request{"p-1", kNow - absl::Hours(1), "stroke"};
  absl::StatusOr<patients_v1::RecordDeathResponse> recorded =
      workflow.RecordDeath(request, absl::InfiniteFuture());
  REQUIRE(recorded.ok());
  CHECK(recorded->downstream_state() == patients_v1::DOWNSTREAM_PENDING);
  CHECK(recorded->patient().status() == patients_v1::DECEASED);
  CHECK(recorded->patient().death().cause() == "stroke");
  CHECK(recorded->event_id() == recorded->workflow_id());
  CHECK_FALSE(recorded->replayed());
  CHECK(commits == 1);

  messaging::OutboxStore outbox(*database);
  absl::StatusOr<std::vector<messaging::PendingEvent>> pending = outbox.ReadUnpublished(10);
  REQUIRE(pending.ok());
  REQUIRE(pending->size() == 1);
  const messaging::OutboxEvent& event = (*pending)[0].event;
  CHECK(event.event_id == recorded->event_id());
  CHECK(event.aggregate_type == "patient");
  CHECK(event.aggregate_id == "p-1");
  CHECK(event.event_type == "hospital.patients.v1.PatientDied");
  CHECK(event.subject == "hospital.patients.v1.patient_died");
  patients_v1::PatientDied died;
  REQUIRE(died.ParseFromString(event.payload));
  CHECK(died.event_id() == recorded->event_id());
  CHECK(died.patient_id() == "p-1");
  CHECK(server_kit::FromProtoTime(died.time_of_death()) == kNow - absl::Hours(1));
  CHECK(died.cause() == "stroke");
  CHECK(server_kit::FromProtoTime(died.record_time()) == kNow);

  // Again: the same event id, replayed, no second event.
  absl::StatusOr<patients_v1::RecordDeathResponse> again =
      workflow.RecordDeath(request, absl::InfiniteFuture());
  REQUIRE(again.ok());
  CHECK(again->replayed());
  CHECK(again->event_id() == recorded->event_id());
  CHECK(outbox.ReadUnpublished(10)->size() == 1);
  CHECK(commits == 1);
}

TEMPLATE_TEST_CASE("an async death refused changes nothing and appends no event", "[async]",
                   SqliteEngine, PostgresEngine) {
  testing_support::TestDatabase database(TestType::kEngine, patients::Migrations());
  patients::PatientsRepository repository(*database);
  REQUIRE(repository.Create(NewPatient("p-1"), kNow).ok());
  base::testing::FakeClock clock(kNow);
  prometheus::Registry metrics;
  integration::LocalDeathWorkflow workflow(repository, clock, metrics,
                                           integration::DeathDelivery::kOutbox);
  // Before the date of birth.
  absl::StatusOr<patients_v1::RecordDeathResponse> early = workflow.RecordDeath(
      {"p-1", absl::FromCivil(absl::CivilDay(1980, 1, 1), absl::UTCTimeZone()), "x"},
      absl::InfiniteFuture());
  CHECK(early.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(workflow.RecordDeath({"nobody", kNow, "x"}, absl::InfiniteFuture()).status().code() ==
        absl::StatusCode::kNotFound);
  // A synchronous death still pending (left before a switch to async) blocks it.
  REQUIRE(repository
              .BeginDeath("p-1", "sync-1", kNow - absl::Hours(2), "x", kNow,
                          {"a-sync-replica", kNow + absl::Minutes(1)})
              .ok());
  CHECK(workflow.RecordDeath({"p-1", kNow, "x"}, absl::InfiniteFuture()).status().code() ==
        absl::StatusCode::kAborted);
  messaging::OutboxStore outbox(*database);
  CHECK(outbox.ReadUnpublished(10)->empty());
}

messaging::InboundEvent DiedEvent(const std::string& event_id, const std::string& patient_id) {
  patients_v1::PatientDied died;
  died.set_event_id(event_id);
  died.set_patient_id(patient_id);
  *died.mutable_time_of_death() = server_kit::ToProtoTime(kNow - absl::Hours(1));
  died.set_cause("stroke");
  *died.mutable_record_time() = server_kit::ToProtoTime(kNow);
  messaging::InboundEvent event;
  event.event_id = event_id;
  event.subject = "hospital.patients.v1.patient_died";
  event.payload = died.SerializeAsString();
  return event;
}

TEMPLATE_TEST_CASE("the morgue admits on an event, once, and rejects what it can never apply",
                   "[async]", SqliteEngine, PostgresEngine) {
  testing_support::TestDatabase database(TestType::kEngine, morgue::Migrations());
  morgue::MorgueRepository repository(*database);
  morgue::PatientDiedHandler handler;
  base::testing::FakeClock clock(kNow);
  messaging::Inbox inbox(*database, handler, clock);

  messaging::InboundEvent undecodable = DiedEvent("bad-1", "p-1");
  undecodable.payload = "\xff\xff\xff";
  messaging::InboundEvent mismatched = DiedEvent("bad-2", "p-1");
  mismatched.event_id = "other";
  messaging::InboundEvent invalid = DiedEvent("bad-3", "p 1 with spaces");
  const std::vector<messaging::EventOutcome> outcomes = inbox.Process(
      {undecodable, mismatched, invalid, DiedEvent("e-1", "p-1"), DiedEvent("e-1", "p-1")});
  REQUIRE(outcomes.size() == 5);
  CHECK(outcomes[0].disposition == messaging::Disposition::kRejected);
  CHECK(outcomes[0].status.message() == "payload: not a hospital.patients.v1.PatientDied");
  CHECK(outcomes[1].disposition == messaging::Disposition::kRejected);
  CHECK(outcomes[2].disposition == messaging::Disposition::kRejected);
  CHECK(std::string(outcomes[2].status.message()).find("patient_id") == 0);
  CHECK(outcomes[3].disposition == messaging::Disposition::kApplied);
  CHECK(outcomes[4].disposition == messaging::Disposition::kDuplicate);
  absl::StatusOr<morgue::Admission> admission = repository.GetByPatient("p-1");
  REQUIRE(admission.ok());
  CHECK(admission->workflow_id() == "e-1");
  CHECK(admission->cause() == "stroke");
  CHECK(server_kit::FromProtoTime(admission->admit_time()) == kNow);
  // A second death event for an admitted patient (another id) changes nothing.
  CHECK(inbox.Process({DiedEvent("e-2", "p-1")})[0].disposition ==
        messaging::Disposition::kApplied);
  CHECK(repository.GetByPatient("p-1")->workflow_id() == "e-1");
}

TEMPLATE_TEST_CASE("the morgue rejects an event whose id is a workflow the saga cancelled",
                   "[async]", SqliteEngine, PostgresEngine) {
  testing_support::TestDatabase database(TestType::kEngine, morgue::Migrations());
  morgue::MorgueRepository repository(*database);
  REQUIRE(repository.CancelWorkflow("p-1", "w-1", kNow).ok());
  morgue::PatientDiedHandler handler;
  base::testing::FakeClock clock(kNow);
  messaging::Inbox inbox(*database, handler, clock);
  const messaging::EventOutcome outcome = inbox.Process({DiedEvent("w-1", "p-1")})[0];
  CHECK(outcome.disposition == messaging::Disposition::kRejected);
  CHECK(outcome.status.code() == absl::StatusCode::kFailedPrecondition);
}

TEMPLATE_TEST_CASE(
    "appointments: an event cancels future ones, booked in the window too, and refuses "
    "new ones",
    "[async]", SqliteEngine, PostgresEngine) {
  testing_support::TestDatabase database(TestType::kEngine, appointments::Migrations());
  appointments::AppointmentsRepository repository(*database);
  // Booked before the death, and after it but before the event arrived (the window).
  REQUIRE(repository.Schedule({"a-1", "p-1", kNow + absl::Hours(24), "Dr. Snow", ""}, kNow).ok());
  REQUIRE(
      repository
          .Schedule({"a-2", "p-1", kNow + absl::Hours(48), "Dr. Snow", ""}, kNow + absl::Minutes(1))
          .ok());
  REQUIRE(repository
              .Schedule({"a-past", "p-1", kNow - absl::Hours(24), "Dr. Snow", ""},
                        kNow - absl::Hours(48))
              .ok());
  appointments::PatientDiedHandler handler;
  base::testing::FakeClock clock(kNow + absl::Minutes(2));
  messaging::Inbox inbox(*database, handler, clock);
  CHECK(inbox.Process({DiedEvent("e-1", "p-1")})[0].disposition ==
        messaging::Disposition::kApplied);
  CHECK(repository.Get("a-1")->status() == hospital::appointments::v1::CANCELLED);
  CHECK(repository.Get("a-2")->status() == hospital::appointments::v1::CANCELLED);
  CHECK(repository.Get("a-1")->cancel_reason() == "patient deceased");
  CHECK(repository.Get("a-past")->status() == hospital::appointments::v1::SCHEDULED);
  CHECK(repository.Schedule({"a-3", "p-1", kNow + absl::Hours(72), "Dr. Snow", ""}, clock.Now())
            .status()
            .code() == absl::StatusCode::kFailedPrecondition);
  CHECK(inbox.Process({DiedEvent("e-1", "p-1")})[0].disposition ==
        messaging::Disposition::kDuplicate);
}

}  // namespace
