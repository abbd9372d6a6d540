// At-least-once delivery through every crash point (base/crash_point.h): a consumer killed after
// fetching, after its handlers ran, after the commit and after the acknowledgement; the outbox
// relay killed before and after the broker's acknowledgement; the file drop's producer killed
// half-way through a file and after it, and its consumers at each step. Each case kills the real
// process with SIGKILL at that exact point, restarts it, and then finds every death's effects
// there exactly once: one admission and one cancellation per patient, one inbox record per
// event, and duplicates exactly where the crash left an effect committed but not acknowledged.
#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "server_kit/rpc_support.h"
#include "support/hospital_fixture.h"

namespace {

using testing_support::Broker;
using testing_support::ContextWithTimeout;
using testing_support::Eventually;
using testing_support::Hospital;
using testing_support::HospitalOptions;
using testing_support::Metric;
using testing_support::ServiceProcess;
namespace patients_v1 = hospital::patients::v1;
namespace appointments_v1 = hospital::appointments::v1;

constexpr int kDeaths = 5;
constexpr int kKilled = 128 + 9;  // ServiceProcess's exit code for SIGKILL.

HospitalOptions BrokerOptions(const Broker& broker) {
  HospitalOptions options;
  options.nats_url = broker.server.url();
  options.with_metrics = true;
  // Redelivery of what a killed consumer had fetched, soon after its restart.
  options.messaging_flags = {"--nats_ack_wait=1s"};
  return options;
}

HospitalOptions FileDropOptions() {
  HospitalOptions options;
  options.with_metrics = true;
  options.every_service_flags = {"--death_workflow=file_drop", "--file_drop_dir={dir}/drop",
                                 "--file_drop_interval=0.2s"};
  return options;
}

// A single number from one of the hospital's databases, read directly (its service may be down).
long long Count(const Hospital& hospital, const std::string& database, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2((hospital.dir() + "/" + database + ".db").c_str(), &db,
                          SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* statement = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(statement) == SQLITE_ROW);
  const long long value = sqlite3_column_int64(statement, 0);
  sqlite3_finalize(statement);
  sqlite3_close(db);
  return value;
}

// Patients p-0 .. p-4, each with an appointment two days ahead.
std::vector<std::string> PatientsWithAppointments(Hospital& hospital) {
  std::vector<std::string> ids;
  for (int i = 0; i < kDeaths; ++i) {
    ids.push_back(absl::StrCat("p-", i));
    hospital.CreatePatient(ids.back());
    hospital.Schedule(ids.back(), absl::Hours(48));
  }
  return ids;
}

// Records each death; returns how many were acknowledged. `until_crash`: the patients service is
// the process being killed, so a call fails at once once it is gone instead of waiting for it.
int RecordDeaths(Hospital& hospital, const std::vector<std::string>& ids,
                 bool until_crash = false) {
  int acknowledged = 0;
  for (const std::string& id : ids) {
    patients_v1::RecordDeathRequest request;
    request.set_patient_id(id);
    *request.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now() - absl::Minutes(5));
    request.set_cause("heart failure");
    patients_v1::RecordDeathResponse response;
    auto context = ContextWithTimeout(absl::Seconds(10), /*wait_for_ready=*/!until_crash);
    acknowledged += hospital.patients().RecordDeath(context.get(), request, &response).ok();
  }
  return acknowledged;
}

// Waits for `process` to die at `point`, and says so.
void ExpectKilledAt(ServiceProcess& process, const std::string& point) {
  const int code = process.WaitForExit(absl::Seconds(20));
  INFO(process.log());
  REQUIRE(code == kKilled);
  REQUIRE(absl::StrContains(process.log(), absl::StrCat("crash point ", point, " reached")));
}

// Restarts `process` (killed) without the crash point.
void RestartUnarmed(Hospital& hospital, const std::string& service, ServiceProcess& process) {
  hospital.SetEnvironment(service, {});
  const absl::Status started = process.Start();
  INFO(started.ToString());
  REQUIRE(started.ok());
}

// Every death's effects, exactly once: each patient admitted once, each of their appointments
// cancelled, one cancellation per patient, one applied inbox record per event in each service.
void ExpectEachDeathAppliedOnce(Hospital& hospital) {
  const auto all_there = [&] {
    return Count(hospital, "morgue", "SELECT COUNT(*) FROM processed_events WHERE outcome = 1") ==
               kDeaths &&
           Count(hospital, "appointments",
                 "SELECT COUNT(*) FROM processed_events WHERE outcome = 1") == kDeaths;
  };
  REQUIRE(Eventually(all_there, absl::Seconds(30)));
  CHECK(Count(hospital, "morgue", "SELECT COUNT(*) FROM admissions") == kDeaths);
  CHECK(Count(hospital, "morgue", "SELECT COUNT(DISTINCT patient_id) FROM admissions") == kDeaths);
  CHECK(Count(hospital, "morgue", "SELECT COUNT(*) FROM processed_events") == kDeaths);
  CHECK(Count(hospital, "appointments", "SELECT COUNT(*) FROM patient_cancellations") == kDeaths);
  CHECK(Count(hospital, "appointments", "SELECT COUNT(*) FROM processed_events") == kDeaths);
  CHECK(Count(hospital, "appointments",
              "SELECT COUNT(*) FROM appointments WHERE status = 2") == kDeaths);  // CANCELLED
  CHECK(Count(hospital, "appointments", "SELECT COUNT(*) FROM appointments") == kDeaths);
}

// Whether a crash at `point` comes after the consumer's commit and before what tells the source
// it is done (the acknowledgement, the file's marker): then the restarted consumer is handed
// those events again and must recognise them.
bool CommittedNotSettled(const std::string& point) {
  return point == "consumer.committed" || point == "file_drop_consumer.committed";
}
// Whether a crash at `point` comes before the consumer's commit: nothing applied before it.
bool BeforeCommit(const std::string& point) {
  return point == "consumer.fetched" || point == "inbox.applied" ||
         point == "file_drop_consumer.read";
}

// The consumer of `service` killed at `point`, restarted: what its new process counted.
void CheckConsumerCrash(Hospital& hospital, const std::string& service, const std::string& point,
                        const std::string& metric) {
  hospital.Start();
  const std::vector<std::string> ids = PatientsWithAppointments(hospital);
  CHECK(RecordDeaths(hospital, ids) == kDeaths);
  ServiceProcess& consumer =
      service == "morgue" ? hospital.morgue_process() : hospital.appointments_process();
  ExpectKilledAt(consumer, point);
  const long long committed_before_restart =
      Count(hospital, service, "SELECT COUNT(*) FROM processed_events");
  if (BeforeCommit(point)) CHECK(committed_before_restart == 0);
  if (CommittedNotSettled(point)) CHECK(committed_before_restart > 0);
  RestartUnarmed(hospital, service, consumer);
  ExpectEachDeathAppliedOnce(hospital);
  const std::string label = absl::StrCat("consumer=\"", service, "\"");
  const double duplicates = Metric(consumer, metric, {label, "outcome=\"duplicate\""});
  const double applied = Metric(consumer, metric, {label, "outcome=\"applied\""});
  INFO(point << ": committed before the restart " << committed_before_restart << ", after it "
             << applied << " applied and " << duplicates << " duplicates");
  // What was committed before the crash is never applied again.
  CHECK(applied == static_cast<double>(kDeaths - committed_before_restart));
  if (BeforeCommit(point)) CHECK(duplicates == 0);
  // Committed but never acknowledged (or marked): handed over again (the broker after its ack
  // wait), recognised, not applied.
  if (CommittedNotSettled(point)) {
    CHECK(Eventually(
        [&] {
          return Metric(consumer, metric, {label, "outcome=\"duplicate\""}) >= 1;
        },
        absl::Seconds(10)));
    CHECK(Count(hospital, service, "SELECT COUNT(*) FROM processed_events") == kDeaths);
  }
  // Marked durably before the crash: the file is not read again.
  if (point == "file_drop_consumer.marked") CHECK(duplicates == 0);
}

// Both JetStream consumers, each of its points in turn, on a fresh hospital and broker.
void CheckJetStreamConsumerCrash(const std::string& service) {
  const std::string point = GENERATE(as<std::string>{}, "consumer.fetched", "inbox.applied",
                                     "consumer.committed", "consumer.acknowledged");
  DYNAMIC_SECTION(point) {
    Broker broker;
    HospitalOptions options = BrokerOptions(broker);
    options.environment[service] = {absl::StrCat("HOSPITAL_CRASH_AT=", point)};
    Hospital hospital(options);
    CheckConsumerCrash(hospital, service, point, "hospital_events_consumed_total");
  }
}

TEST_CASE("the morgue's JetStream consumer killed at each step applies every event once",
          "[crash][async]") {
  CheckJetStreamConsumerCrash("morgue");
}

TEST_CASE(
    "the appointments service's JetStream consumer killed at each step applies every "
    "event once",
    "[crash][async]") {
  CheckJetStreamConsumerCrash("appointments");
}

TEST_CASE("the file drop's consumers killed at each step apply every event once",
          "[crash][file_drop]") {
  const std::string service = GENERATE(as<std::string>{}, "morgue", "appointments");
  const std::string point = GENERATE(as<std::string>{}, "file_drop_consumer.read", "inbox.applied",
                                     "file_drop_consumer.committed", "file_drop_consumer.marked");
  DYNAMIC_SECTION(service << " at " << point) {
    HospitalOptions options = FileDropOptions();
    options.environment[service] = {absl::StrCat("HOSPITAL_CRASH_AT=", point)};
    Hospital hospital(options);
    CheckConsumerCrash(hospital, service, point, "hospital_file_drop_events_total");
  }
}

TEST_CASE(
    "the outbox relay killed before and after the broker's acknowledgement publishes "
    "every event, applied once",
    "[crash][async]") {
  const std::string point = GENERATE(as<std::string>{}, "publisher.sent", "relay.acknowledged");
  DYNAMIC_SECTION(point) {
    Broker broker;
    HospitalOptions options = BrokerOptions(broker);
    options.environment["patients"] = {absl::StrCat("HOSPITAL_CRASH_AT=", point)};
    Hospital hospital(options);
    hospital.Start();
    const std::vector<std::string> ids = PatientsWithAppointments(hospital);
    RecordDeaths(hospital, ids, /*until_crash=*/true);  // Answers may be lost with the process.
    ExpectKilledAt(hospital.patients_process(), point);
    hospital.SetEnvironment("patients", {});
    hospital.RestartPatients();
    // The deaths committed before the crash are answered as replays; the others are recorded.
    CHECK(RecordDeaths(hospital, ids) == kDeaths);
    ExpectEachDeathAppliedOnce(hospital);
    CHECK(Eventually(
        [&] { return Metric(hospital.patients_process(), "hospital_outbox_unpublished", {}) == 0; },
        absl::Seconds(10)));
  }
}

TEST_CASE(
    "the file drop's producer killed after its file is in place writes it again, applied "
    "once",
    "[crash][file_drop]") {
  HospitalOptions options = FileDropOptions();
  options.environment["patients"] = {"HOSPITAL_CRASH_AT=file_drop.renamed"};
  Hospital hospital(options);
  hospital.Start();
  const std::vector<std::string> ids = PatientsWithAppointments(hospital);
  RecordDeaths(hospital, ids, /*until_crash=*/true);
  ExpectKilledAt(hospital.patients_process(), "file_drop.renamed");
  hospital.SetEnvironment("patients", {});
  hospital.RestartPatients();
  CHECK(RecordDeaths(hospital, ids) == kDeaths);
  ExpectEachDeathAppliedOnce(hospital);
}

TEST_CASE("a file drop producer killed half-way through a file leaves no file a consumer takes",
          "[crash][file_drop]") {
  HospitalOptions options = FileDropOptions();
  options.environment["patients"] = {"HOSPITAL_CRASH_AT=file_drop.half_written"};
  Hospital hospital(options);
  hospital.Start();
  const std::vector<std::string> ids = PatientsWithAppointments(hospital);
  RecordDeaths(hospital, ids, /*until_crash=*/true);
  ExpectKilledAt(hospital.patients_process(), "file_drop.half_written");
  const std::string drop = hospital.dir() + "/drop";
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(drop)) {
    names.push_back(entry.path().filename().string());
  }
  INFO(absl::StrJoin(names, ", "));
  // The half-written file sits under its temporary name only.
  CHECK(std::count_if(names.begin(), names.end(),
                      [](const std::string& name) { return absl::EndsWith(name, ".tmp"); }) == 1);
  CHECK(std::none_of(names.begin(), names.end(),
                     [](const std::string& name) { return absl::EndsWith(name, ".evt"); }));
  // The consumers, polling meanwhile, took nothing and set nothing aside.
  absl::SleepFor(absl::Milliseconds(500));  // More than two of their polls.
  CHECK_FALSE(std::filesystem::exists(drop + "/rejected"));
  CHECK(Count(hospital, "morgue", "SELECT COUNT(*) FROM processed_events") == 0);
  CHECK(Count(hospital, "appointments", "SELECT COUNT(*) FROM processed_events") == 0);
  // Restarted, the producer removes what it never finished and writes the events again.
  hospital.SetEnvironment("patients", {});
  hospital.RestartPatients();
  CHECK(RecordDeaths(hospital, ids) == kDeaths);
  ExpectEachDeathAppliedOnce(hospital);
  for (const auto& entry : std::filesystem::directory_iterator(drop)) {
    const std::string name = entry.path().filename().string();
    CHECK_FALSE((absl::StartsWith(name, ".events-") && absl::EndsWith(name, ".tmp")));
  }
}

}  // namespace
