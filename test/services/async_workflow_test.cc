// The asynchronous death workflow end to end: the three real services and a real nats-server
// with JetStream, as processes on loopback. Each case is one of the failure modes the outbox,
// the broker and the idempotent consumers exist for.
#include <nats/nats.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include <grpcpp/create_channel.h>
#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "hospital/patients/v1/events.pb.h"
#include "server_kit/rpc_support.h"
#include "support/hospital_fixture.h"
#include "testing_support/nats_server.h"
#include "testing_support/service_process.h"

namespace {

using testing_support::Broker;
using testing_support::ContextWithTimeout;
using testing_support::Eventually;
using testing_support::Hospital;
using testing_support::HospitalOptions;
using testing_support::Metric;
using testing_support::NatsServer;
using testing_support::PostgresEngine;
using testing_support::Readiness;
using testing_support::SqliteEngine;
using testing_support::TempDir;
namespace patients_v1 = hospital::patients::v1;
namespace morgue_v1 = hospital::morgue::v1;
namespace appointments_v1 = hospital::appointments::v1;
namespace messaging_v1 = hospital::messaging::v1;

constexpr char kSubject[] = "hospital.patients.v1.patient_died";

HospitalOptions AsyncOptions(const Broker& broker, server_kit::Engine engine) {
  HospitalOptions options = testing_support::OnEngine(engine);
  options.nats_url = broker.server.url();
  options.with_metrics = true;
  return options;
}

// Admissions in the morgue's database, read directly (the morgue may be down).
int AdmissionCountOffline(Hospital& hospital) {
  return testing_support::CountRowsOffline(hospital.database("morgue"), "admissions");
}

appointments_v1::Appointment GetAppointment(Hospital& hospital, const std::string& id) {
  appointments_v1::GetAppointmentRequest request;
  request.set_appointment_id(id);
  appointments_v1::Appointment appointment;
  auto context = ContextWithTimeout(absl::Seconds(5), /*wait_for_ready=*/true);
  const grpc::Status status =
      hospital.appointments().GetAppointment(context.get(), request, &appointment);
  REQUIRE(status.ok());
  return appointment;
}

// Patients "p-0" .. "p-<count - 1>".
std::vector<std::string> CreatePatients(Hospital& hospital, int count) {
  std::vector<std::string> ids;
  for (int i = 0; i < count; ++i) {
    ids.push_back(absl::StrCat("p-", i));
    hospital.CreatePatient(ids.back());
  }
  return ids;
}

// Kills both consumers, records the deaths of `ids`, and waits until the broker has
// acknowledged every event (the outbox is empty): the events then exist only in the broker.
void RecordDeathsWithConsumersDown(Hospital& hospital, const std::vector<std::string>& ids) {
  hospital.morgue_process().Kill();
  hospital.appointments_process().Kill();
  for (const std::string& id : ids) hospital.RequireDeath(id);
  REQUIRE(Eventually(
      [&] {
        return Metric(hospital.patients_process(), "hospital_outbox_published_total") ==
                   static_cast<double>(ids.size()) &&
               Metric(hospital.patients_process(), "hospital_outbox_unpublished") == 0;
      },
      absl::Seconds(10)));
}

bool AllApplied(Hospital& hospital, const std::vector<std::string>& patient_ids) {
  for (const std::string& id : patient_ids) {
    if (!hospital.FindAdmission(id).has_value()) return false;
  }
  return true;
}

// Publishes raw messages straight to the stream, as a buggy or hostile producer would.
class RawPublisher {
 public:
  explicit RawPublisher(const std::string& url) {
    REQUIRE(natsConnection_ConnectTo(&connection_, url.c_str()) == NATS_OK);
    REQUIRE(natsConnection_JetStream(&jetstream_, connection_, nullptr) == NATS_OK);
  }
  ~RawPublisher() {
    jsCtx_Destroy(jetstream_);
    natsConnection_Destroy(connection_);
  }
  // Publishes `payload` with Nats-Msg-Id `message_id`; returns whether the stream stored it
  // as new (false: dropped as a duplicate).
  bool Publish(const std::string& message_id, const std::string& payload) {
    natsMsg* message = nullptr;
    REQUIRE(natsMsg_Create(&message, kSubject, nullptr, payload.data(),
                           static_cast<int>(payload.size())) == NATS_OK);
    REQUIRE(natsMsgHeader_Set(message, "Nats-Msg-Id", message_id.c_str()) == NATS_OK);
    jsPubAck* ack = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    const natsStatus status = js_PublishMsg(&ack, jetstream_, message, nullptr, &code);
    natsMsg_Destroy(message);
    INFO(natsStatus_GetText(status));
    REQUIRE(status == NATS_OK);
    const bool stored = !ack->Duplicate;
    jsPubAck_Destroy(ack);
    return stored;
  }

 private:
  natsConnection* connection_ = nullptr;
  jsCtx* jetstream_ = nullptr;
};

std::string PatientDiedPayload(const std::string& event_id, const std::string& patient_id) {
  patients_v1::PatientDied died;
  died.set_event_id(event_id);
  died.set_patient_id(patient_id);
  *died.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now() - absl::Hours(1));
  died.set_cause("heart failure");
  *died.mutable_record_time() = server_kit::ToProtoTime(absl::Now());
  return died.SerializeAsString();
}

TEMPLATE_TEST_CASE(
    "async: RecordDeath answers at once with the event id, then both services apply it", "[async]",
    SqliteEngine, PostgresEngine) {
  Broker broker;
  Hospital hospital(AsyncOptions(broker, TestType::kEngine));
  hospital.Start();
  hospital.CreatePatient("p-1");
  const appointments_v1::Appointment future = hospital.Schedule("p-1", absl::Hours(48));

  const patients_v1::RecordDeathResponse response = hospital.RequireDeath("p-1");
  CHECK(response.downstream_state() == patients_v1::DOWNSTREAM_PENDING);
  CHECK_FALSE(response.event_id().empty());
  CHECK(response.workflow_id() == response.event_id());
  CHECK(response.patient().status() == patients_v1::DECEASED);
  CHECK_FALSE(response.has_morgue());

  REQUIRE(Eventually([&] { return hospital.FindAdmission("p-1").has_value(); }, absl::Seconds(10)));
  CHECK(hospital.FindAdmission("p-1")->workflow_id() == response.event_id());
  REQUIRE(Eventually(
      [&] {
        return GetAppointment(hospital, future.appointment_id()).status() ==
               appointments_v1::CANCELLED;
      },
      absl::Seconds(10)));
  // Later bookings are refused once the event was applied.
  appointments_v1::ScheduleAppointmentRequest booking;
  booking.set_patient_id("p-1");
  *booking.mutable_scheduled_time() = server_kit::ToProtoTime(absl::Now() + absl::Hours(72));
  booking.set_clinician("Dr. Snow");
  booking.set_purpose("check-up");
  appointments_v1::Appointment refused;
  auto context = ContextWithTimeout(absl::Seconds(5));
  CHECK(
      hospital.appointments().ScheduleAppointment(context.get(), booking, &refused).error_code() ==
      grpc::StatusCode::FAILED_PRECONDITION);

  // Repeating the call returns the same event; nothing new is published.
  const patients_v1::RecordDeathResponse again = hospital.RequireDeath("p-1");
  CHECK(again.replayed());
  CHECK(again.event_id() == response.event_id());
  CHECK(Metric(hospital.patients_process(), "hospital_outbox_published_total") == 1);
  CHECK(Eventually(
      [&] { return Metric(hospital.patients_process(), "hospital_outbox_unpublished") == 0; },
      absl::Seconds(5)));
}

TEMPLATE_TEST_CASE("async: concurrent RecordDeath for one patient produce one event", "[async]",
                   SqliteEngine, PostgresEngine) {
  Broker broker;
  Hospital hospital(AsyncOptions(broker, TestType::kEngine));
  hospital.Start();
  hospital.CreatePatient("p-1");
  std::vector<std::string> event_ids(8);
  std::vector<std::thread> callers;
  for (std::size_t i = 0; i < event_ids.size(); ++i) {
    callers.emplace_back([&, i] {
      patients_v1::RecordDeathResponse response;
      if (hospital.RecordDeath("p-1", &response, absl::Seconds(10), /*wait_for_ready=*/true).ok())
        event_ids[i] = response.event_id();
    });
  }
  for (std::thread& caller : callers) caller.join();
  const std::set<std::string> distinct(event_ids.begin(), event_ids.end());
  CHECK(distinct.size() == 1);
  CHECK_FALSE(distinct.begin()->empty());
  REQUIRE(Eventually([&] { return hospital.FindAdmission("p-1").has_value(); }, absl::Seconds(10)));
  CHECK(Metric(hospital.patients_process(), "hospital_outbox_published_total") == 1);
}

TEMPLATE_TEST_CASE(
    "async: deaths recorded while the morgue is down are all applied after it returns", "[async]",
    SqliteEngine, PostgresEngine) {
  Broker broker;
  Hospital hospital(AsyncOptions(broker, TestType::kEngine));
  hospital.Start();
  const std::vector<std::string> ids = CreatePatients(hospital, 20);
  hospital.morgue_process().Kill();
  for (const std::string& id : ids) {
    CHECK(hospital.RequireDeath(id).downstream_state() == patients_v1::DOWNSTREAM_PENDING);
  }
  REQUIRE(hospital.morgue_process().Start().ok());
  CHECK(Eventually([&] { return AllApplied(hospital, ids); }, absl::Seconds(15)));
  CHECK(hospital.CountAdmissions() == 20);
}

TEMPLATE_TEST_CASE(
    "async: deaths recorded while the broker is down are delivered after it restarts", "[async]",
    SqliteEngine, PostgresEngine) {
  Broker broker;
  Hospital hospital(AsyncOptions(broker, TestType::kEngine));
  hospital.Start();
  const std::vector<std::string> ids = CreatePatients(hospital, 10);
  broker.server.Kill();
  for (const std::string& id : ids) hospital.RequireDeath(id);
  REQUIRE(Eventually(
      [&] { return Metric(hospital.patients_process(), "hospital_outbox_unpublished") == 10; },
      absl::Seconds(5)));
  // Losing the broker leaves every service ready (readiness is re-checked every second), and
  // it shows in the metrics instead.
  absl::SleepFor(absl::Milliseconds(1500));
  for (testing_support::ServiceProcess* process :
       {&hospital.patients_process(), &hospital.morgue_process(),
        &hospital.appointments_process()}) {
    CHECK(Readiness(process->address()) == grpc::health::v1::HealthCheckResponse::SERVING);
  }
  CHECK(Metric(hospital.patients_process(), "hospital_nats_connected") == 0);
  CHECK(Metric(hospital.patients_process(), "hospital_outbox_oldest_unpublished_age_seconds") > 0);
  REQUIRE(broker.server.Start().ok());
  CHECK(Eventually([&] { return AllApplied(hospital, ids); }, absl::Seconds(15)));
  CHECK(Eventually(
      [&] { return Metric(hospital.patients_process(), "hospital_outbox_unpublished") == 0; },
      absl::Seconds(5)));
  CHECK(hospital.CountAdmissions() == 10);
}

TEMPLATE_TEST_CASE(
    "async: events the broker acknowledged survive its kill -9 (file store, one server)", "[async]",
    SqliteEngine, PostgresEngine) {
  Broker broker;
  Hospital hospital(AsyncOptions(broker, TestType::kEngine));
  hospital.Start();
  const std::vector<std::string> ids = CreatePatients(hospital, 10);
  // No consumer running: the events exist only in the broker once the outbox is empty.
  RecordDeathsWithConsumersDown(hospital, ids);
  broker.server.Kill();
  REQUIRE(broker.server.Start().ok());
  REQUIRE(hospital.morgue_process().Start().ok());
  REQUIRE(hospital.appointments_process().Start().ok());
  CHECK(Eventually([&] { return AllApplied(hospital, ids); }, absl::Seconds(15)));
  CHECK(hospital.CountAdmissions() == 10);
}

TEMPLATE_TEST_CASE(
    "async: after the broker lost its store, --outbox_republish_since sends the events again",
    "[async]", SqliteEngine, PostgresEngine) {
  Broker broker;
  Hospital hospital(AsyncOptions(broker, TestType::kEngine));
  hospital.Start();
  const std::vector<std::string> ids = CreatePatients(hospital, 10);
  RecordDeathsWithConsumersDown(hospital, ids);
  // What a power cut can do to a single server's unsynced file store, at its worst: the
  // acknowledged events are gone.
  broker.server.Kill();
  std::filesystem::remove_all(broker.directory.path() + "/store");
  REQUIRE(broker.server.Start().ok());
  hospital.patients_process().Kill();
  hospital.RestartPatients({"--outbox_republish_since=5m"});
  REQUIRE(hospital.morgue_process().Start().ok());
  REQUIRE(hospital.appointments_process().Start().ok());
  CHECK(Eventually([&] { return AllApplied(hospital, ids); }, absl::Seconds(15)));
  CHECK(hospital.CountAdmissions() == 10);
  CHECK(hospital.patients_process().log().find("\"event\":\"outbox_republish\"") !=
        std::string::npos);
}

TEMPLATE_TEST_CASE(
    "async: patients killed between commit and publish publishes after restart, once", "[async]",
    SqliteEngine, PostgresEngine) {
  Broker broker;
  Hospital hospital(AsyncOptions(broker, TestType::kEngine));
  hospital.Start();
  const std::vector<std::string> ids = CreatePatients(hospital, 10);
  // A frozen broker: the deaths commit, the relay cannot get an acknowledgement.
  broker.server.Freeze();
  for (const std::string& id : ids) hospital.RequireDeath(id);
  hospital.patients_process().Kill();
  broker.server.Unfreeze();
  hospital.RestartPatients();
  CHECK(Eventually([&] { return AllApplied(hospital, ids); }, absl::Seconds(15)));
  CHECK(hospital.CountAdmissions() == 10);
  // Whatever the killed relay had sent is a repeat: absorbed by the broker or the consumer.
  CHECK(Metric(hospital.morgue_process(), "hospital_events_consumed_total",
               {"outcome=\"applied\""}) == 10);
}

TEMPLATE_TEST_CASE("async: a fault rule on the morgue service also faults its event handling",
                   "[async][faults]", SqliteEngine, PostgresEngine) {
  Broker broker;
  HospitalOptions options = AsyncOptions(broker, TestType::kEngine);
  TempDir faults;
  const std::string faults_file = faults.path() + "/faults.json";
  // The rule the benchmark's morgue_down uses, expiring by itself.
  std::ofstream(faults_file) << R"({"faults": [{"id": "down",
      "method": "hospital.morgue.v1.MorgueService/*", "abort": {"code": "UNAVAILABLE"},
      "expireAfter": "2s"}]})";
  options.morgue_flags = {absl::StrCat("--faults_file=", faults_file)};
  Hospital hospital(options);
  hospital.Start();
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(absl::StrCat("p-", i));
    hospital.CreatePatient(ids.back());
    hospital.RequireDeath(ids.back());
  }
  REQUIRE(Eventually(
      [&] {
        return Metric(hospital.morgue_process(), "hospital_events_consumed_total",
                      {"outcome=\"retry\""}) >= 5;
      },
      absl::Seconds(5)));
  CHECK(Eventually([&] { return AllApplied(hospital, ids); }, absl::Seconds(15)));
  CHECK(Metric(hospital.morgue_process(), "hospital_events_consumed_total",
               {"outcome=\"applied\""}) == 5);
}

TEMPLATE_TEST_CASE("async: morgue killed while applying events applies each exactly once",
                   "[async]", SqliteEngine, PostgresEngine) {
  Broker broker;
  HospitalOptions options = AsyncOptions(broker, TestType::kEngine);
  options.messaging_flags = {"--nats_fetch_batch=4", "--nats_ack_wait=2s"};
  // Each event takes 20 ms to handle, so the 40 take 0.8 s: the kill lands mid-way.
  TempDir faults;
  const std::string faults_file = faults.path() + "/faults.json";
  std::ofstream(faults_file) << R"({"faults": [{"id": "slow",
      "method": "hospital.morgue.v1.MorgueService/HandlePatientDied",
      "delay": {"fixed": "0.02s"}}]})";
  options.morgue_flags = {absl::StrCat("--faults_file=", faults_file)};
  Hospital hospital(options);
  hospital.Start();
  const std::vector<std::string> ids = CreatePatients(hospital, 40);
  for (const std::string& id : ids) hospital.RequireDeath(id);
  REQUIRE(Eventually([&] { return hospital.FindAdmission("p-0").has_value(); }, absl::Seconds(10)));
  hospital.morgue_process().Kill();
  const int before_restart = AdmissionCountOffline(hospital);
  CHECK(before_restart < 40);  // It was killed mid-way.
  REQUIRE(hospital.morgue_process().Start().ok());
  CHECK(Eventually([&] { return AllApplied(hospital, ids); }, absl::Seconds(30)));
  CHECK(hospital.CountAdmissions() == 40);
}

TEMPLATE_TEST_CASE("async: the same event delivered twice has one effect", "[async]", SqliteEngine,
                   PostgresEngine) {
  Broker broker;
  HospitalOptions options = AsyncOptions(broker, TestType::kEngine);
  // A short duplicate window, so that the broker stores the repeat and the consumers see it.
  options.messaging_flags = {"--nats_duplicate_window=200ms"};
  Hospital hospital(options);
  hospital.Start();
  hospital.CreatePatient("p-1");
  const appointments_v1::Appointment future = hospital.Schedule("p-1", absl::Hours(48));
  RawPublisher publisher(broker.server.url());
  const std::string payload = PatientDiedPayload("event-1", "p-1");
  REQUIRE(publisher.Publish("event-1", payload));
  absl::SleepFor(absl::Milliseconds(500));
  REQUIRE(publisher.Publish("event-1", payload));
  for (testing_support::ServiceProcess* process :
       {&hospital.morgue_process(), &hospital.appointments_process()}) {
    CHECK(Eventually(
        [&] {
          return Metric(*process, "hospital_events_consumed_total", {"outcome=\"duplicate\""}) == 1;
        },
        absl::Seconds(10)));
    CHECK(Metric(*process, "hospital_events_consumed_total", {"outcome=\"applied\""}) == 1);
  }
  CHECK(hospital.CountAdmissions() == 1);
  CHECK(GetAppointment(hospital, future.appointment_id()).status() == appointments_v1::CANCELLED);
}

TEMPLATE_TEST_CASE(
    "async: a poison message is recorded, terminated and listed, and the consumer carries on",
    "[async]", SqliteEngine, PostgresEngine) {
  Broker broker;
  Hospital hospital(AsyncOptions(broker, TestType::kEngine));
  hospital.Start();
  hospital.CreatePatient("p-1");
  RawPublisher publisher(broker.server.url());
  REQUIRE(publisher.Publish("poison-1", "not a protobuf \xff\xfe"));
  REQUIRE(publisher.Publish("poison-2", PatientDiedPayload("another-id", "p-1")));
  hospital.RequireDeath("p-1");
  REQUIRE(Eventually([&] { return hospital.FindAdmission("p-1").has_value(); }, absl::Seconds(10)));

  for (messaging_v1::EventInbox::Stub* inbox :
       {&hospital.morgue_inbox(), &hospital.appointments_inbox()}) {
    messaging_v1::ListRejectedEventsResponse rejected;
    REQUIRE(Eventually(
        [&] {
          messaging_v1::ListRejectedEventsRequest request;
          auto context = ContextWithTimeout(absl::Seconds(5));
          return inbox->ListRejectedEvents(context.get(), request, &rejected).ok() &&
                 rejected.events_size() == 2;
        },
        absl::Seconds(10)));
    std::map<std::string, std::string> reasons;
    for (const auto& event : rejected.events()) {
      reasons[event.event_id()] = event.reason();
      CHECK(event.subject() == kSubject);
      CHECK(event.deliveries() == 1);
    }
    CHECK(reasons["poison-1"] == "payload: not a hospital.patients.v1.PatientDied");
    CHECK(reasons["poison-2"].find("event_id: the payload says \"another-id\"") == 0);
    // Paging: one at a time, most recent first, then the end.
    messaging_v1::ListRejectedEventsRequest first_page;
    first_page.set_page_size(1);
    messaging_v1::ListRejectedEventsResponse page;
    auto context = ContextWithTimeout(absl::Seconds(5));
    REQUIRE(inbox->ListRejectedEvents(context.get(), first_page, &page).ok());
    REQUIRE(page.events_size() == 1);
    CHECK(page.events(0).event_id() == rejected.events(0).event_id());
    messaging_v1::ListRejectedEventsRequest second_page;
    second_page.set_page_size(1);
    second_page.set_page_token(page.next_page_token());
    auto second_context = ContextWithTimeout(absl::Seconds(5));
    REQUIRE(inbox->ListRejectedEvents(second_context.get(), second_page, &page).ok());
    REQUIRE(page.events_size() == 1);
    CHECK(page.events(0).event_id() == rejected.events(1).event_id());
    CHECK(page.next_page_token().empty());
  }
  CHECK(Metric(hospital.morgue_process(), "hospital_events_consumed_total",
               {"outcome=\"rejected\""}) == 2);
  CHECK(hospital.CountAdmissions() == 1);
}

}  // namespace
