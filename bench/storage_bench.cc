// The storage work of RecordDeath alone, without gRPC: the four transactions a recorded death
// costs (patients: BeginDeath and CompleteDeath; morgue: Admit; appointments: CancelForPatient),
// run on the three services' repositories and fresh databases in one process, by --threads
// threads at once (so that group commit can share fsyncs, as under load in the services).
//
// It reports deaths per second and the CPU (user + system, the whole process, kernel I/O work
// included) per death, which is the floor that the storage puts under the cost of a death in
// the capacity run of fault_bench: whatever the RPCs cost comes on top.
//
// --engine=postgresql runs the same on PostgreSQL 15: a server of its own (Debian's
// postgresql-15, in a temporary directory, as the test support starts it), with --standby a
// synchronous standby beside it (every commit waits for it, as in a deployment that survives the
// loss of a node), one database per service, a pool of --threads connections each. Its CPU
// figure adds the servers' processes (read from /proc) to this one's.
//
//   storage_bench --deaths=20000 --threads=16 --synchronous=FULL
//   storage_bench --engine=postgresql --standby --deaths=5000 --threads=16
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "appointments/appointments_repository.h"
#include "morgue/morgue_repository.h"
#include "patients/patients_repository.h"
#include "server_kit/open_database.h"
#include "testing_support/postgres_server.h"
#include "testing_support/service_process.h"

ABSL_FLAG(int, deaths, 20000, "Deaths to record (each on a patient of its own)");
ABSL_FLAG(int, threads, 16, "Threads recording deaths at once");
ABSL_FLAG(int, appointments_per_patient, 3, "Future appointments seeded per patient");
ABSL_FLAG(std::string, synchronous, "FULL", "PRAGMA synchronous of the three databases");
ABSL_FLAG(std::string, dir, "storage-bench", "Directory for the databases (emptied first)");
ABSL_FLAG(std::string, engine, "sqlite", "sqlite, or postgresql (a server of the bench's own)");
ABSL_FLAG(bool, standby, false,
          "postgresql: also a synchronous standby, which every commit waits for");

namespace {

double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

std::unique_ptr<server_kit::Database> OpenOrDie(const std::string& path,
                                                const server_kit::Schema& migrations,
                                                const server_kit::DatabaseOptions& options) {
  absl::StatusOr<std::unique_ptr<server_kit::Database>> database =
      server_kit::OpenDatabase(path, migrations, options);
  if (!database.ok()) {
    std::fprintf(stderr, "%s\n", database.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(database);
}

// Patient i's id: spread over the key space, as real ids are (sequential ones would put every
// death of a run on the same few index pages).
std::string PatientId(int i) {
  return absl::StrCat("p", absl::Hex(static_cast<std::uint32_t>(i) * 2654435761u, absl::kZeroPad8),
                      "-", i);
}

void CheckOk(const absl::Status& status, const char* what) {
  if (status.ok()) return;
  std::fprintf(stderr, "%s: %s\n", what, status.ToString().c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Measures the storage work of RecordDeath without gRPC.");
  absl::ParseCommandLine(argc, argv);
  const int deaths = absl::GetFlag(FLAGS_deaths);
  const int threads = absl::GetFlag(FLAGS_threads);
  const std::string dir = absl::GetFlag(FLAGS_dir);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  server_kit::DatabaseOptions options;
  options.synchronous = absl::GetFlag(FLAGS_synchronous);
  options.pool_size = threads;
  const std::string engine = absl::GetFlag(FLAGS_engine);
  std::unique_ptr<testing_support::PostgresServer> primary;
  std::unique_ptr<testing_support::PostgresServer> standby;
  std::string patients_location = dir + "/patients.db";
  std::string morgue_location = dir + "/morgue.db";
  std::string appointments_location = dir + "/appointments.db";
  if (engine == "postgresql") {
    primary = std::make_unique<testing_support::PostgresServer>("max_connections = 400");
    CheckOk(primary->Start(), "start PostgreSQL");
    if (absl::GetFlag(FLAGS_standby)) {
      standby = std::make_unique<testing_support::PostgresServer>();
      CheckOk(standby->MakeStandbyOf(*primary, "standby1"), "make the standby");
      CheckOk(standby->Start(), "start the standby");
      CheckOk(primary->RequireSynchronousStandby("standby1"), "synchronous standby");
    }
    for (const char* name : {"patients", "morgue", "appointments"}) {
      CheckOk(primary->CreateDatabase(name), "create database");
    }
    std::ifstream file(primary->password_file());
    std::getline(file, options.password);
    patients_location = primary->Uri("patients");
    morgue_location = primary->Uri("morgue");
    appointments_location = primary->Uri("appointments");
  } else if (engine != "sqlite") {
    std::fprintf(stderr, "--engine: sqlite or postgresql, got \"%s\"\n", engine.c_str());
    return 2;
  }
  const auto server_cpu = [&] {
    double total = 0;
    for (const auto* server : {primary.get(), standby.get()}) {
      if (server != nullptr)
        total += absl::ToDoubleSeconds(testing_support::CpuTimeWithChildren(server->pid()));
    }
    return total;
  };
  auto patients_db = OpenOrDie(patients_location, patients::Migrations(), options);
  auto morgue_db = OpenOrDie(morgue_location, morgue::Migrations(), options);
  auto appointments_db = OpenOrDie(appointments_location, appointments::Migrations(), options);
  patients::PatientsRepository patients_repository(*patients_db);
  morgue::MorgueRepository morgue_repository(*morgue_db);
  appointments::AppointmentsRepository appointments_repository(*appointments_db);

  const absl::Time now = absl::Now();
  std::fprintf(stderr, "seeding %d patients...\n", deaths);
  for (int i = 0; i < deaths; ++i) {
    patients::v1::Patient patient;
    patient.set_patient_id(PatientId(i));
    patient.set_given_name("Ada");
    patient.set_family_name("Lovelace");
    patient.set_date_of_birth("1960-01-01");
    CheckOk(patients_repository.Create(patient, now).status(), "create patient");
    for (int a = 0; a < absl::GetFlag(FLAGS_appointments_per_patient); ++a) {
      CheckOk(appointments_repository
                  .Schedule({absl::StrCat("a", i, "-", a), patient.patient_id(),
                             now + absl::Hours(24 * (a + 1)), "dr-who", "check-up"},
                            now)
                  .status(),
              "schedule");
    }
  }

  const std::int64_t commits_before =
      patients_db->stats().commits + morgue_db->stats().commits + appointments_db->stats().commits;
  std::atomic<int> next{0};
  const double cpu_before = ProcessCpuSeconds();
  const double server_cpu_before = server_cpu();
  const absl::Time start = absl::Now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (int i = next++; i < deaths; i = next++) {
        const std::string patient_id = PatientId(i);
        const std::string workflow_id = absl::StrCat("w", i);
        const absl::Time time_of_death = absl::Now();
        absl::StatusOr<patients::BeginDeathResult> begun = patients_repository.BeginDeath(
            patient_id, workflow_id, time_of_death, "old age", absl::Now(),
            {"storage_bench", absl::Now() + absl::Minutes(1)});
        CheckOk(begun.status(), "BeginDeath");
        absl::StatusOr<morgue::AdmitResult> admitted =
            morgue_repository.Admit(patient_id, workflow_id, time_of_death, "old age", absl::Now());
        CheckOk(admitted.status(), "Admit");
        absl::StatusOr<appointments::PatientCancellation> cancelled =
            appointments_repository.CancelForPatient(patient_id, workflow_id, "patient deceased",
                                                     true, absl::Now());
        CheckOk(cancelled.status(), "CancelForPatient");
        patients::v1::RecordDeathResponse response;
        *response.mutable_patient() = begun->patient;
        response.set_workflow_id(workflow_id);
        CheckOk(patients_repository.CompleteDeath(workflow_id, response, absl::Now()),
                "CompleteDeath");
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const double cpu = ProcessCpuSeconds() - cpu_before;
  const double servers = server_cpu() - server_cpu_before;
  const std::int64_t commits = patients_db->stats().commits + morgue_db->stats().commits +
                               appointments_db->stats().commits - commits_before;
  const std::int64_t retries = patients_db->stats().transaction_retries +
                               morgue_db->stats().transaction_retries +
                               appointments_db->stats().transaction_retries;
  const std::string setup =
      engine == "sqlite"
          ? absl::StrCat("sqlite synchronous=", options.synchronous)
          : (standby != nullptr ? "postgresql with a synchronous standby" : "postgresql alone");
  std::printf(
      "storage_bench: %s, %d deaths, %d threads: %.0f deaths/s, CPU %.1f us per death in this "
      "process (user+system) + %.1f us in the database servers, %.2f transactions per commit, "
      "%.3f retries per death\n",
      setup.c_str(), deaths, threads, deaths / seconds, cpu / deaths * 1e6, servers / deaths * 1e6,
      4.0 * deaths / static_cast<double>(commits), static_cast<double>(retries) / deaths);
  std::filesystem::remove_all(dir);
  return 0;
}
