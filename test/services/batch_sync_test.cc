// The shared-database batch job (--death_workflow=shared_db_batch, src/batch_sync) against the
// real binaries: a death reaches the other two databases at the next pass; killed mid-way,
// restarted, or run again from a lost position, it loses and doubles nothing; and a column
// renamed by one service's team breaks the job, which is the coupling the pattern brings.
#include <grpcpp/create_channel.h>
#include <sqlite3.h>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server_kit/rpc_support.h"
#include "support/hospital_fixture.h"
#include "testing_support/metrics_reader.h"

namespace {

using testing_support::ContextWithTimeout;
using testing_support::Eventually;
using testing_support::Hospital;
using testing_support::ServiceProcess;
namespace patients_v1 = hospital::patients::v1;
namespace morgue_v1 = hospital::morgue::v1;
namespace appointments_v1 = hospital::appointments::v1;

testing_support::HospitalOptions BatchOptions() {
  testing_support::HospitalOptions options;
  options.every_service_flags = {"--death_workflow=shared_db_batch"};
  return options;
}

// The batch job over the hospital's three databases, its own database `name`.db.
std::unique_ptr<ServiceProcess> BatchJob(Hospital& hospital, const std::string& name,
                                         std::vector<std::string> flags = {}) {
  const std::string& dir = hospital.dir();
  flags.push_back(absl::StrCat("--patients_db=", dir, "/patients.db"));
  flags.push_back(absl::StrCat("--morgue_db=", dir, "/morgue.db"));
  flags.push_back(absl::StrCat("--appointments_db=", dir, "/appointments.db"));
  flags.push_back(absl::StrCat("--db=", dir, "/", name, ".db"));
  flags.push_back("--rpc_logging=none");
  return std::make_unique<ServiceProcess>(testing_support::BinaryPath("batch_sync"),
                                          std::move(flags), absl::StrCat(dir, "/", name, ".log"),
                                          absl::StrCat(dir, "/", name, ".ports"),
                                          /*with_metrics=*/true, /*with_admin=*/false);
}

double Events(ServiceProcess& job, const std::string& target, const std::string& outcome) {
  const absl::StatusOr<std::string> scrape = testing_support::ScrapeMetrics(job.metrics_port());
  if (!scrape.ok()) return -1;
  return testing_support::SumSamples(
      *scrape, "hospital_batch_sync_events_total",
      {absl::StrCat("target=\"", target, "\""), absl::StrCat("outcome=\"", outcome, "\"")});
}

TEST_CASE("batch: a death recorded in the patients database reaches the others at the next pass",
          "[batch][hospital]") {
  Hospital hospital(BatchOptions());
  hospital.Start();
  auto job = BatchJob(hospital, "batch_sync", {"--sync_interval=0.2s"});
  REQUIRE(job->Start().ok());
  hospital.CreatePatient("p-1");
  hospital.Schedule("p-1", absl::Hours(24));
  const patients_v1::RecordDeathResponse recorded = hospital.RequireDeath("p-1");
  // Acknowledged once the patients database has it; the rest is the job's.
  CHECK(recorded.downstream_state() == patients_v1::DOWNSTREAM_PENDING);
  const absl::Time acknowledged = absl::Now();
  CHECK(Eventually(
      [&] { return hospital.CountAdmissions() == 1 && hospital.CountScheduled("p-1") == 0; },
      absl::Seconds(10)));
  // Within a pass or two of the interval.
  CHECK(absl::Now() - acknowledged < absl::Seconds(2));
  CHECK(Events(*job, "morgue", "applied") == 1);
  CHECK(Events(*job, "appointments", "applied") == 1);
  CHECK(job->Terminate() == 0);
}

TEST_CASE(
    "batch: killed mid-way, restarted, or run from a lost position, the job loses and "
    "doubles nothing",
    "[batch][hospital]") {
  constexpr int kDeaths = 40;
  Hospital hospital(BatchOptions());
  hospital.Start();
  for (int i = 0; i < kDeaths; ++i) {
    const std::string id = absl::StrCat("p-", i);
    hospital.CreatePatient(id);
    hospital.Schedule(id, absl::Hours(24));
    hospital.RequireDeath(id);
  }
  // One death per transaction, so that a kill lands between batches (and sometimes between a
  // target's commit and the position's).
  auto job = BatchJob(hospital, "batch_sync", {"--sync_interval=0.05s", "--sync_batch=1"});
  REQUIRE(job->Start().ok());
  REQUIRE(Eventually([&] { return hospital.CountAdmissions() >= 5; }, absl::Seconds(20)));
  job->Kill();
  const int admitted_at_kill = hospital.CountAdmissions();
  INFO("admitted when killed: " << admitted_at_kill);
  CHECK(admitted_at_kill < kDeaths);
  REQUIRE(job->Start().ok());
  CHECK(Eventually([&] { return hospital.CountAdmissions() == kDeaths; }, absl::Seconds(30)));
  CHECK(Eventually([&] { return hospital.CountScheduled(absl::StrCat("p-", kDeaths - 1)) == 0; },
                   absl::Seconds(10)));
  CHECK(job->Terminate() == 0);

  // A job whose position is lost (a new database of its own) takes every death again: each is a
  // duplicate to both targets, and nothing changes.
  auto fresh = BatchJob(hospital, "batch_sync_fresh", {"--sync_interval=0.05s"});
  REQUIRE(fresh->Start().ok());
  CHECK(Eventually(
      [&] {
        return Events(*fresh, "morgue", "duplicate") == kDeaths &&
               Events(*fresh, "appointments", "duplicate") == kDeaths;
      },
      absl::Seconds(20)));
  CHECK(Events(*fresh, "morgue", "applied") == 0);
  CHECK(hospital.CountAdmissions() == kDeaths);
  for (int i = 0; i < kDeaths; ++i) CHECK(hospital.CountScheduled(absl::StrCat("p-", i)) == 0);
  CHECK(fresh->Terminate() == 0);
}

// Runs `sql` on the database file at `path`, as a service's new migration would.
void Migrate(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  char* error = nullptr;
  const int code = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  INFO((error != nullptr ? error : ""));
  sqlite3_free(error);
  sqlite3_close(db);
  REQUIRE(code == SQLITE_OK);
}

double Failures(ServiceProcess& job, const std::string& target) {
  const absl::StatusOr<std::string> scrape = testing_support::ScrapeMetrics(job.metrics_port());
  if (!scrape.ok()) return -1;
  return testing_support::SumSamples(*scrape, "hospital_batch_sync_failures_total",
                                     {absl::StrCat("target=\"", target, "\"")});
}

TEST_CASE(
    "batch coupling: a column renamed in one service's schema stops the job where it "
    "reads or writes it",
    "[batch][hospital][coupling]") {
  Hospital hospital(BatchOptions());
  hospital.Start();
  hospital.CreatePatient("p-1");
  hospital.Schedule("p-1", absl::Hours(24));
  hospital.CreatePatient("p-2");
  hospital.Schedule("p-2", absl::Hours(24));
  hospital.RequireDeath("p-1");

  SECTION(
      "the morgue's team renames admissions.cause: the morgue gets nothing, appointments "
      "still do") {
    // The morgue's own code would change with its migration; the job, built against the old
    // schema, does not.
    Migrate(hospital.dir() + "/morgue.db",
            "ALTER TABLE admissions RENAME COLUMN cause TO cause_of_death; "
            "PRAGMA user_version = 100;");
    auto job = BatchJob(hospital, "batch_sync", {"--sync_interval=0.1s"});
    REQUIRE(job->Start().ok());
    CHECK(Eventually([&] { return hospital.CountScheduled("p-1") == 0; }, absl::Seconds(10)));
    CHECK(Eventually([&] { return Failures(*job, "morgue") >= 3; }, absl::Seconds(10)));
    CHECK(Failures(*job, "appointments") == 0);
    CHECK(Events(*job, "morgue", "applied") == 0);
    CHECK(job->Terminate() == 0);
    // How it surfaces: a failure per pass in the metric, and the log names the column.
    CHECK_THAT(job->log(), Catch::Contains("\"event\":\"batch_sync_failed\"") &&
                               Catch::Contains("\"target\":\"morgue\"") &&
                               Catch::Contains("cause"));
  }
  SECTION(
      "the patients team renames death_workflows.cause: no death reaches anyone, while "
      "the patients service goes on acknowledging them") {
    Migrate(hospital.dir() + "/patients.db",
            "ALTER TABLE death_workflows RENAME COLUMN cause TO cause_of_death;");
    auto job = BatchJob(hospital, "batch_sync", {"--sync_interval=0.1s"});
    REQUIRE(job->Start().ok());
    CHECK(Eventually(
        [&] { return Failures(*job, "morgue") >= 3 && Failures(*job, "appointments") >= 3; },
        absl::Seconds(10)));
    CHECK(hospital.CountAdmissions() == 0);
    CHECK(hospital.CountScheduled("p-1") == 1);
    CHECK(job->Terminate() == 0);
    CHECK_THAT(job->log(), Catch::Contains("no such column: cause"));
  }
}

}  // namespace
