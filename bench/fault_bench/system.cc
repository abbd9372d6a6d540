#include "fault_bench/system.h"

#include <filesystem>
#include <fstream>
#include <utility>

#include <grpcpp/create_channel.h>
#include <sqlite3.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/grpc_status.h"
#include "base/status.h"
#include "hospital/appointments/v1/appointments.grpc.pb.h"
#include "hospital/patients/v1/patients.grpc.pb.h"
#include "server_kit/rpc_support.h"
#include "server_kit/tls.h"

namespace fault_bench {

namespace patients_v1 = hospital::patients::v1;
namespace appointments_v1 = hospital::appointments::v1;

std::unique_ptr<grpc::ClientContext> CallContext(absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return context;
}

// Holds a database's write lock from another connection (BEGIN IMMEDIATE, never committed), as a
// long migration or a stuck transaction of its owner would; rolled back on destruction.
class DatabaseLock final {
 public:
  static absl::StatusOr<std::unique_ptr<DatabaseLock>> Take(const std::string& path) {
    auto lock = std::unique_ptr<DatabaseLock>(new DatabaseLock);
    if (sqlite3_open_v2(path.c_str(), &lock->db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      return absl::InternalError(absl::StrCat("cannot open ", path, " to lock it"));
    }
    sqlite3_busy_timeout(lock->db_, 5000);
    if (sqlite3_exec(lock->db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
      return absl::InternalError(
          absl::StrCat("cannot lock ", path, ": ", sqlite3_errmsg(lock->db_)));
    }
    return lock;
  }
  ~DatabaseLock() {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db_);
  }
  DatabaseLock(const DatabaseLock&) = delete;
  DatabaseLock& operator=(const DatabaseLock&) = delete;

 private:
  DatabaseLock() = default;
  sqlite3* db_ = nullptr;
};

namespace {

// The flags all three services start with, for how deaths travel between them: the pattern,
// and where to find what it needs.
std::vector<std::string> PatternFlags(const Variant& variant, const std::string& dir,
                                      const testing_support::NatsServer* broker) {
  std::vector<std::string> flags = {
      absl::StrCat("--death_workflow=", integration::PatternName(variant.pattern))};
  if (variant.Needs().broker) flags.push_back(absl::StrCat("--nats_url=", broker->url()));
  if (variant.Needs().shared_directory) {
    flags.push_back(absl::StrCat("--file_drop_dir=", dir, "/drop"));
    flags.push_back(absl::StrCat("--file_drop_interval=", kBatchIntervalSeconds, "s"));
  }
  return flags;
}

}  // namespace

System::System(const RunOptions& options, const Variant& variant, const std::string& dir,
               const std::vector<std::string>& morgue_flags)
    : options_(options), tls_(variant.tls), dir_(dir) {
  std::ofstream(dir + "/token") << kBenchToken;
  if (variant.storage == Storage::kPostgres) {
    primary_ = std::make_unique<testing_support::PostgresServer>();
    standby_ = std::make_unique<testing_support::PostgresServer>();
  }
  if (tls_) MakeCertificates();
  if (variant.Needs().broker) {
    std::filesystem::create_directories(dir + "/nats");
    broker_ = std::make_unique<testing_support::NatsServer>(dir + "/nats", options.broker_config);
  }
  const std::vector<std::string> pattern = PatternFlags(variant, dir, broker_.get());
  std::vector<std::string> own_morgue_flags = pattern;
  own_morgue_flags.insert(own_morgue_flags.end(), morgue_flags.begin(), morgue_flags.end());
  morgue_ = MakeService("morgue", own_morgue_flags);
  appointments_ = MakeService("appointments", pattern);
  patients_flags_ = variant.patients_flags;
  if (variant.Needs().peer_databases && !variant.Needs().batch_job) {
    patients_flags_.push_back(absl::StrCat("--morgue_db=", dir, "/morgue.db"));
    patients_flags_.push_back(absl::StrCat("--appointments_db=", dir, "/appointments.db"));
  }
  patients_flags_.insert(patients_flags_.end(), pattern.begin(), pattern.end());
  if (variant.Needs().batch_job) sync_job_ = MakeSyncJob();
}

System::~System() = default;

void System::MakeCertificates() {
  const std::string certs = dir_ + "/certs";
  tls_status_ = testing_support::RunToCompletion(
      {"bash", testing_support::SourcePath("scripts/make-certs.sh"), certs, "patients", "morgue",
       "appointments", "bench"},
      dir_ + "/certs.log");
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      server_kit::TlsChannelCredentialsFrom(
          {certs + "/bench.crt", certs + "/bench.key", certs + "/ca.crt", absl::Minutes(1)});
  if (tls_status_.ok()) tls_status_ = credentials.status();
  if (credentials.ok()) credentials_ = *std::move(credentials);
}

std::unique_ptr<testing_support::ServiceProcess> System::MakeService(
    const std::string& name, std::vector<std::string> flags) {
  if (tls_) {
    // Mutual TLS with each service's own certificate; only patients may call the workflow
    // methods of the other two (their production caller policies).
    flags.push_back(absl::StrCat("--tls_cert=", dir_, "/certs/", name, ".crt"));
    flags.push_back(absl::StrCat("--tls_key=", dir_, "/certs/", name, ".key"));
    flags.push_back(absl::StrCat("--tls_ca=", dir_, "/certs/ca.crt"));
    if (name != "patients") {
      flags.push_back(absl::StrCat(
          "--authz_policy=",
          testing_support::SourcePath("k8s/components/tls/caller-policy-" + name + ".json")));
    }
  }
  if (primary_ != nullptr) {
    // Both servers; libpq picks the one that takes writes, and moves with a promotion.
    flags.push_back(absl::StrCat("--db=postgresql://", testing_support::PostgresServer::kUser,
                                 "@127.0.0.1:", primary_->port(), ",127.0.0.1:", standby_->port(),
                                 "/", name, "?target_session_attrs=read-write&connect_timeout=2"));
    flags.push_back(absl::StrCat("--db_password_file=", primary_->password_file()));
  } else {
    flags.push_back(absl::StrCat("--db=", dir_, "/", name, ".db"));
  }
  flags.push_back("--fault_admin");
  flags.push_back(absl::StrCat("--admin_token_file=", dir_, "/token"));
  flags.push_back("--rpc_logging=none");
  flags.insert(flags.end(), options_.service_flags.begin(), options_.service_flags.end());
  flags.push_back("--shutdown_grace=2s");
  return std::make_unique<testing_support::ServiceProcess>(
      absl::StrCat(options_.binary_dir, "/", name), std::move(flags),
      absl::StrCat(dir_, "/", name, ".log"), absl::StrCat(dir_, "/", name, ".ports"),
      /*with_metrics=*/true);
}

std::unique_ptr<testing_support::ServiceProcess> System::MakeSyncJob() {
  std::vector<std::string> flags = {absl::StrCat("--db=", dir_, "/batch_sync.db"),
                                    absl::StrCat("--patients_db=", dir_, "/patients.db"),
                                    absl::StrCat("--morgue_db=", dir_, "/morgue.db"),
                                    absl::StrCat("--appointments_db=", dir_, "/appointments.db"),
                                    absl::StrCat("--sync_interval=", kBatchIntervalSeconds, "s"),
                                    "--rpc_logging=none",
                                    "--shutdown_grace=2s"};
  flags.insert(flags.end(), options_.service_flags.begin(), options_.service_flags.end());
  return std::make_unique<testing_support::ServiceProcess>(
      absl::StrCat(options_.binary_dir, "/batch_sync"), std::move(flags), dir_ + "/batch_sync.log",
      dir_ + "/batch_sync.ports", /*with_metrics=*/true, /*with_admin=*/false);
}

absl::Status System::Start() {
  if (!tls_status_.ok()) return tls_status_;
  if (primary_ != nullptr) {
    constexpr char kStandbyName[] = "standby1";
    RETURN_IF_ERROR(primary_->Start());
    RETURN_IF_ERROR(standby_->MakeStandbyOf(*primary_, kStandbyName));
    RETURN_IF_ERROR(standby_->Start());
    RETURN_IF_ERROR(primary_->RequireSynchronousStandby(kStandbyName));
    for (Service service : {Service::kPatients, Service::kMorgue, Service::kAppointments}) {
      RETURN_IF_ERROR(primary_->CreateDatabase(ServiceName(service)));
    }
  }
  if (broker_ != nullptr) RETURN_IF_ERROR(broker_->Start());
  RETURN_IF_ERROR(morgue_->Start());
  RETURN_IF_ERROR(appointments_->Start());
  std::vector<std::string> flags = patients_flags_;
  flags.push_back(absl::StrCat("--morgue_address=", morgue_->address()));
  flags.push_back(absl::StrCat("--appointments_address=", appointments_->address()));
  flags.push_back("--reconcile_interval=0.2s");
  patients_ = MakeService("patients", std::move(flags));
  RETURN_IF_ERROR(patients_->Start());
  // After the services, which create the databases it writes into.
  if (sync_job_ != nullptr) return sync_job_->Start();
  return absl::OkStatus();
}

void System::Stop() {
  locks_.clear();
  for (auto* process : {sync_job_.get(), patients_.get(), morgue_.get(), appointments_.get()}) {
    if (process != nullptr) process->SendTerminate();
  }
  for (auto* process : {sync_job_.get(), patients_.get(), morgue_.get(), appointments_.get()}) {
    if (process != nullptr) process->WaitForExit();
  }
  if (broker_ != nullptr) broker_->Terminate();
  // Their data goes with the run's directory: no need to wait for a clean shutdown.
  if (standby_ != nullptr) standby_->Kill();
  if (primary_ != nullptr) primary_->Kill();
}

std::string System::PostgresConnection(Service service) const {
  if (primary_ == nullptr) return "";
  return absl::StrCat("host=", primary_->socket_directory(), ",", standby_->socket_directory(),
                      " port=", primary_->port(), ",", standby_->port(),
                      " user=", testing_support::PostgresServer::kUser,
                      " dbname=", ServiceName(service),
                      " target_session_attrs=read-write connect_timeout=2");
}

std::string System::SqlitePath(Service service) const {
  return absl::StrCat(dir_, "/", ServiceName(service), ".db");
}

absl::Status System::LockDatabase(Service service) {
  if (primary_ != nullptr) {
    return absl::FailedPreconditionError("database locks are for the SQLite variants");
  }
  ASSIGN_OR_RETURN(locks_[service],
                   DatabaseLock::Take(absl::StrCat(dir_, "/", ServiceName(service), ".db")));
  return absl::OkStatus();
}

void System::UnlockDatabase(Service service) { locks_.erase(service); }

std::shared_ptr<grpc::Channel> System::Channel(Service service) {
  return grpc::CreateChannel(process(service).address(), credentials_);
}

std::shared_ptr<grpc::Channel> System::AdminChannel(Service service) {
  return grpc::CreateChannel(process(service).admin_address(), credentials_);
}

testing_support::ServiceProcess& System::process(Service service) {
  switch (service) {
    case Service::kPatients:
      return *patients_;
    case Service::kMorgue:
      return *morgue_;
    case Service::kAppointments:
      return *appointments_;
    case Service::kSyncJob:
      if (sync_job_ != nullptr) return *sync_job_;
      break;
    case Service::kBroker:
    case Service::kDatabase:
      break;  // Not ServiceProcesses: see broker(), primary() and standby().
  }
  return *patients_;
}

absl::Status Seed(System& system, int patients, int appointments_each,
                  std::vector<std::string>& ids) {
  auto patient_stub = patients_v1::PatientsService::NewStub(system.Channel(Service::kPatients));
  auto appointment_stub =
      appointments_v1::AppointmentsService::NewStub(system.Channel(Service::kAppointments));
  for (int i = 0; i < patients; ++i) {
    patients_v1::CreatePatientRequest create;
    create.set_patient_id(absl::StrCat("patient-", i));
    create.set_given_name("Bench");
    create.set_family_name(absl::StrCat("Patient ", i));
    create.set_date_of_birth("1950-01-01");
    patients_v1::Patient patient;
    grpc::Status status =
        patient_stub->CreatePatient(CallContext(absl::Seconds(10)).get(), create, &patient);
    if (!status.ok()) return base::FromGrpcStatus(status);
    ids.push_back(create.patient_id());
    for (int k = 0; k < appointments_each; ++k) {
      appointments_v1::ScheduleAppointmentRequest book;
      book.set_patient_id(create.patient_id());
      *book.mutable_scheduled_time() =
          server_kit::ToProtoTime(absl::Now() + absl::Hours(24 * (k + 1)));
      book.set_clinician("Dr. Bench");
      appointments_v1::Appointment appointment;
      status = appointment_stub->ScheduleAppointment(CallContext(absl::Seconds(10)).get(), book,
                                                     &appointment);
      if (!status.ok()) return base::FromGrpcStatus(status);
    }
  }
  return absl::OkStatus();
}

}  // namespace fault_bench
