// The direct database write (--death_workflow=direct_db_write) against the real binaries: the
// patients service writes a death into the morgue's and the appointments service's databases
// before it answers; a locked database leaves the death to the background pass, which finishes
// it, also after the patients service was killed in between; and a column renamed by the
// morgue's team breaks the patients service's writes there, which is the coupling it brings.
#include <sqlite3.h>

#include <catch2/catch.hpp>

#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server_kit/rpc_support.h"
#include "support/hospital_fixture.h"
#include "testing_support/metrics_reader.h"

namespace {

using testing_support::ContextWithTimeout;
using testing_support::Eventually;
using testing_support::Hospital;
namespace patients_v1 = hospital::patients::v1;
namespace morgue_v1 = hospital::morgue::v1;
namespace appointments_v1 = hospital::appointments::v1;

testing_support::HospitalOptions DirectOptions() {
  testing_support::HospitalOptions options;
  options.every_service_flags = {"--death_workflow=direct_db_write"};
  options.patients_flags = {"--morgue_db={dir}/morgue.db",
                            "--appointments_db={dir}/appointments.db",
                            "--direct_write_busy_timeout=0.2s"};
  return options;
}

// Holds the write lock of a database file, as its owner in a long transaction would.
class WriteLock final {
 public:
  explicit WriteLock(const std::string& path) {
    REQUIRE(sqlite3_open(path.c_str(), &db_) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
  }
  ~WriteLock() { Release(); }
  void Release() {
    if (db_ == nullptr) return;
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db_);
    db_ = nullptr;
  }

 private:
  sqlite3* db_ = nullptr;
};

TEST_CASE("direct: a death is in both other databases before the answer", "[direct][hospital]") {
  Hospital hospital(DirectOptions());
  hospital.Start();
  hospital.CreatePatient("p-1");
  hospital.Schedule("p-1", absl::Hours(24));
  const patients_v1::RecordDeathResponse recorded = hospital.RequireDeath("p-1");
  CHECK(recorded.downstream_state() == patients_v1::DOWNSTREAM_APPLIED);
  CHECK(hospital.FindAdmission("p-1").has_value());
  CHECK(hospital.CountScheduled("p-1") == 0);
}

TEST_CASE("direct: deaths recorded together while a database is locked share the passes",
          "[direct][hospital]") {
  Hospital hospital(DirectOptions());
  hospital.Start();
  constexpr int kDeaths = 12;
  for (int i = 0; i < kDeaths; ++i) hospital.CreatePatient(absl::StrCat("p-", i));
  std::vector<absl::Duration> waited(kDeaths);
  std::vector<grpc::Status> statuses(kDeaths);
  std::vector<patients_v1::RecordDeathResponse> responses(kDeaths);
  {
    WriteLock lock(hospital.dir() + "/morgue.db");
    // The callers make no assertion of their own: Catch2's are not thread-safe (twelve
    // threads asserting at once once corrupted the test's heap).
    std::vector<std::thread> callers;
    for (int i = 0; i < kDeaths; ++i) {
      callers.emplace_back([&, i] {
        const auto at = static_cast<std::size_t>(i);
        patients_v1::RecordDeathRequest request;
        request.set_patient_id(absl::StrCat("p-", i));
        request.set_cause("stroke");
        *request.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now() - absl::Hours(1));
        const absl::Time sent = absl::Now();
        statuses[at] = hospital.patients().RecordDeath(ContextWithTimeout(absl::Seconds(10)).get(),
                                                       request, &responses[at]);
        waited[at] = absl::Now() - sent;
      });
    }
    for (std::thread& caller : callers) caller.join();
  }
  for (int i = 0; i < kDeaths; ++i) {
    const auto at = static_cast<std::size_t>(i);
    INFO("p-" << i << ": " << statuses[at].error_message());
    REQUIRE(statuses[at].ok());
    CHECK(responses[at].downstream_state() == patients_v1::DOWNSTREAM_PENDING);
  }
  // One pass per death would keep the last caller for 12 busy timeouts (2.4 s); shared, each
  // waits for the pass running when it came and the next one (0.4 s, and scheduling).
  CHECK(*std::max_element(waited.begin(), waited.end()) < absl::Milliseconds(1500));
  CHECK(Eventually([&] { return hospital.CountAdmissions() == kDeaths; }, absl::Seconds(10)));
}

TEST_CASE(
    "direct: a locked database leaves the death to the background pass, which finishes "
    "it, across a kill of the patients service",
    "[direct][hospital]") {
  Hospital hospital(DirectOptions());
  hospital.Start();
  for (const char* id : {"p-1", "p-2"}) {
    hospital.CreatePatient(id);
    hospital.Schedule(id, absl::Hours(24));
  }
  {
    // The morgue's database is locked: the answer says pending; appointments got it anyway.
    WriteLock lock(hospital.dir() + "/morgue.db");
    const patients_v1::RecordDeathResponse recorded = hospital.RequireDeath("p-1");
    CHECK(recorded.downstream_state() == patients_v1::DOWNSTREAM_PENDING);
    CHECK(hospital.CountScheduled("p-1") == 0);
  }
  CHECK(Eventually([&] { return hospital.FindAdmission("p-1").has_value(); }, absl::Seconds(10)));

  // Both locked, then the patients service killed: the death is committed in its database
  // only; the restarted service writes it into both, once.
  auto morgue_lock = std::make_unique<WriteLock>(hospital.dir() + "/morgue.db");
  auto appointments_lock = std::make_unique<WriteLock>(hospital.dir() + "/appointments.db");
  CHECK(hospital.RequireDeath("p-2").downstream_state() == patients_v1::DOWNSTREAM_PENDING);
  hospital.patients_process().Kill();
  morgue_lock.reset();
  appointments_lock.reset();
  CHECK_FALSE(hospital.FindAdmission("p-2").has_value());
  hospital.RestartPatients();
  CHECK(Eventually(
      [&] {
        return hospital.FindAdmission("p-2").has_value() && hospital.CountScheduled("p-2") == 0;
      },
      absl::Seconds(10)));
  CHECK(hospital.CountAdmissions() == 2);
}

TEST_CASE(
    "direct coupling: a column the morgue's team renames stops the patients service's "
    "writes into the morgue",
    "[direct][hospital][coupling]") {
  testing_support::HospitalOptions options = DirectOptions();
  options.with_metrics = true;
  Hospital hospital(options);
  hospital.Start();
  hospital.CreatePatient("p-1");
  hospital.Schedule("p-1", absl::Hours(24));
  // The morgue's new migration; its own code changes with it, the patients service's does not.
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open((hospital.dir() + "/morgue.db").c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db,
                         "ALTER TABLE admissions RENAME COLUMN cause TO cause_of_death; "
                         "PRAGMA user_version = 100;",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  // The death is recorded and the appointments cancelled; the morgue never gets it.
  CHECK(hospital.RequireDeath("p-1").downstream_state() == patients_v1::DOWNSTREAM_PENDING);
  CHECK(hospital.CountScheduled("p-1") == 0);
  // How it surfaces: the failure metric of the patients service, per target, and its log. Once
  // several background passes (0.1 s apart) have failed, the morgue still has no admission.
  auto failures = [&](const std::string& target) {
    return testing_support::Metric(hospital.patients_process(),
                                   "hospital_batch_sync_failures_total",
                                   {absl::StrCat("target=\"", target, "\"")});
  };
  REQUIRE(Eventually([&] { return failures("morgue") >= 2; }, absl::Seconds(10)));
  CHECK_FALSE(hospital.FindAdmission("p-1").has_value());
  CHECK(failures("appointments") == 0);
  CHECK(testing_support::Metric(hospital.patients_process(), "hospital_deaths_recorded_total",
                                {"result=\"accepted\""}) == 1);
  hospital.Stop();
  CHECK_THAT(hospital.patients_process().log(),
             Catch::Contains("\"event\":\"batch_sync_failed\"") &&
                 Catch::Contains("\"target\":\"morgue\""));
}

}  // namespace
