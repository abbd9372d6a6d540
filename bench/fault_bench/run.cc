#include "fault_bench/run.h"

#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include <google/protobuf/util/json_util.h>
#include <grpcpp/create_channel.h>
#include <sqlite3.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/grpc_status.h"
#include "base/status.h"
#include "base/sync.h"
#include "echo/v1/echo.grpc.pb.h"
#include "fault_bench/summary.h"
#include "hospital/faults/v1/faults.grpc.pb.h"
#include "hospital/patients/v1/events.pb.h"
#include "resilience/v1/admin.grpc.pb.h"
#include "server_kit/rpc_support.h"
#include "server_kit/serve.h"
#include "server_kit/tls.h"
#include "testing_support/nats_server.h"
#include "testing_support/service_process.h"

namespace fault_bench {
namespace {

namespace patients_v1 = hospital::patients::v1;
namespace morgue_v1 = hospital::morgue::v1;
namespace appointments_v1 = hospital::appointments::v1;
namespace faults_v1 = hospital::faults::v1;

constexpr char kToken[] = "bench-token";

std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return context;
}

std::shared_ptr<grpc::Channel> Channel(const testing_support::ServiceProcess& process) {
  return grpc::CreateChannel(process.address(), grpc::InsecureChannelCredentials());
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

// The services of one run: patients, morgue and appointments, with the variant's nats-server or
// batch job beside them.
class System {
 public:
  // `morgue_flags` are the scenario's for the morgue (Scenario::morgue_flags).
  System(const RunOptions& options, const Variant& variant, const std::string& dir,
         const std::vector<std::string>& morgue_flags = {})
      : dir_(dir) {
    std::ofstream(dir + "/token") << kToken;
    if (variant.tls) {
      // Certificates as an operator makes them, one per service and one for the bench (a
      // client of every service that is not the patients service).
      const std::string certs = dir + "/certs";
      tls_status_ = testing_support::RunToCompletion(
          {"bash", testing_support::SourcePath("scripts/make-certs.sh"), certs, "patients",
           "morgue", "appointments", "bench"},
          dir + "/certs.log");
      absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
          server_kit::TlsChannelCredentialsFrom(
              {certs + "/bench.crt", certs + "/bench.key", certs + "/ca.crt", absl::Minutes(1)});
      if (tls_status_.ok()) tls_status_ = credentials.status();
      if (credentials.ok()) credentials_ = *std::move(credentials);
    }
    // Mutual TLS with each service's own certificate; only patients may call the workflow
    // methods of the other two (their production caller policies).
    auto tls_flags = [&](const std::string& name) -> std::vector<std::string> {
      if (!variant.tls) return {};
      std::vector<std::string> flags = {absl::StrCat("--tls_cert=", dir, "/certs/", name, ".crt"),
                                        absl::StrCat("--tls_key=", dir, "/certs/", name, ".key"),
                                        absl::StrCat("--tls_ca=", dir, "/certs/ca.crt")};
      if (name != "patients") {
        flags.push_back(absl::StrCat(
            "--authz_policy=",
            testing_support::SourcePath("k8s/components/tls/caller-policy-" + name + ".json")));
      }
      return flags;
    };
    auto make = [&, tls_flags](const std::string& name, std::vector<std::string> flags) {
      const std::vector<std::string> tls = tls_flags(name);
      flags.insert(flags.end(), tls.begin(), tls.end());
      flags.push_back(absl::StrCat("--db=", dir, "/", name, ".db"));
      flags.push_back("--fault_admin");
      flags.push_back(absl::StrCat("--admin_token_file=", dir, "/token"));
      flags.push_back("--rpc_logging=none");
      flags.insert(flags.end(), options.service_flags.begin(), options.service_flags.end());
      flags.push_back("--shutdown_grace=2s");
      return std::make_unique<testing_support::ServiceProcess>(
          absl::StrCat(options.binary_dir, "/", name), std::move(flags),
          absl::StrCat(dir, "/", name, ".log"), absl::StrCat(dir, "/", name, ".ports"),
          /*with_metrics=*/true);
    };
    if (variant.Needs().broker) {
      std::filesystem::create_directories(dir + "/nats");
      broker_ = std::make_unique<testing_support::NatsServer>(dir + "/nats", options.broker_config);
    }
    const std::vector<std::string> messaging = PatternFlags(variant, dir, broker_.get());
    std::vector<std::string> own_morgue_flags = messaging;
    own_morgue_flags.insert(own_morgue_flags.end(), morgue_flags.begin(), morgue_flags.end());
    morgue_ = make("morgue", own_morgue_flags);
    appointments_ = make("appointments", messaging);
    std::vector<std::string> patients_flags = variant.patients_flags;
    if (variant.Needs().peer_databases && !variant.Needs().batch_job) {
      patients_flags.push_back(absl::StrCat("--morgue_db=", dir, "/morgue.db"));
      patients_flags.push_back(absl::StrCat("--appointments_db=", dir, "/appointments.db"));
    }
    if (variant.Needs().batch_job) {
      std::vector<std::string> flags = {
          absl::StrCat("--db=", dir, "/batch_sync.db"),
          absl::StrCat("--patients_db=", dir, "/patients.db"),
          absl::StrCat("--morgue_db=", dir, "/morgue.db"),
          absl::StrCat("--appointments_db=", dir, "/appointments.db"),
          absl::StrCat("--sync_interval=", kBatchIntervalSeconds, "s"),
          "--rpc_logging=none",
          "--shutdown_grace=2s"};
      flags.insert(flags.end(), options.service_flags.begin(), options.service_flags.end());
      sync_job_ = std::make_unique<testing_support::ServiceProcess>(
          absl::StrCat(options.binary_dir, "/batch_sync"), std::move(flags),
          dir + "/batch_sync.log", dir + "/batch_sync.ports", /*with_metrics=*/true,
          /*with_admin=*/false);
    }
    make_patients_ = [make, this, flags = std::move(patients_flags), messaging]() mutable {
      flags.insert(flags.end(), messaging.begin(), messaging.end());
      flags.push_back(absl::StrCat("--morgue_address=", morgue_->address()));
      flags.push_back(absl::StrCat("--appointments_address=", appointments_->address()));
      flags.push_back("--reconcile_interval=0.2s");
      return make("patients", flags);
    };
  }

  absl::Status Start() {
    if (!tls_status_.ok()) return tls_status_;
    if (broker_ != nullptr) {
      if (auto s = broker_->Start(); !s.ok()) return s;
    }
    if (auto s = morgue_->Start(); !s.ok()) return s;
    if (auto s = appointments_->Start(); !s.ok()) return s;
    patients_ = make_patients_();
    RETURN_IF_ERROR(patients_->Start());
    // After the services, which create the databases it writes into.
    if (sync_job_ != nullptr) return sync_job_->Start();
    return absl::OkStatus();
  }

  void Stop() {
    locks_.clear();
    for (auto* process : {sync_job_.get(), patients_.get(), morgue_.get(), appointments_.get()}) {
      if (process != nullptr) process->SendTerminate();
    }
    for (auto* process : {sync_job_.get(), patients_.get(), morgue_.get(), appointments_.get()}) {
      if (process != nullptr) process->WaitForExit();
    }
    if (broker_ != nullptr) broker_->Terminate();
  }

  // The asynchronous variant's nats-server; null for the others.
  testing_support::NatsServer* broker() { return broker_.get(); }
  // The shared-database variant's batch job; null for the others.
  testing_support::ServiceProcess* sync_job() { return sync_job_.get(); }

  // Write-locks `service`'s database until UnlockDatabase.
  absl::Status LockDatabase(Service service) {
    ASSIGN_OR_RETURN(locks_[service],
                     DatabaseLock::Take(absl::StrCat(dir_, "/", ServiceName(service), ".db")));
    return absl::OkStatus();
  }
  void UnlockDatabase(Service service) { locks_.erase(service); }

  // A channel to `service`'s public listener, or to its admin listener (faults, breakers), with
  // the variant's credentials.
  std::shared_ptr<grpc::Channel> Channel(Service service) {
    return grpc::CreateChannel(process(service).address(), credentials_);
  }
  std::shared_ptr<grpc::Channel> AdminChannel(Service service) {
    return grpc::CreateChannel(process(service).admin_address(), credentials_);
  }

  testing_support::ServiceProcess& process(Service service) {
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
        break;  // Not a ServiceProcess: see broker().
    }
    return *patients_;
  }

 private:
  const std::string dir_;
  std::unique_ptr<testing_support::NatsServer> broker_;
  std::unique_ptr<testing_support::ServiceProcess> sync_job_;
  std::map<Service, std::unique_ptr<DatabaseLock>> locks_;
  std::unique_ptr<testing_support::ServiceProcess> morgue_;
  std::unique_ptr<testing_support::ServiceProcess> appointments_;
  std::unique_ptr<testing_support::ServiceProcess> patients_;
  std::function<std::unique_ptr<testing_support::ServiceProcess>()> make_patients_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_ = grpc::InsecureChannelCredentials();
  absl::Status tls_status_;
};

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
        patient_stub->CreatePatient(Context(absl::Seconds(10)).get(), create, &patient);
    if (!status.ok()) return base::FromGrpcStatus(status);
    ids.push_back(create.patient_id());
    for (int k = 0; k < appointments_each; ++k) {
      appointments_v1::ScheduleAppointmentRequest book;
      book.set_patient_id(create.patient_id());
      *book.mutable_scheduled_time() =
          server_kit::ToProtoTime(absl::Now() + absl::Hours(24 * (k + 1)));
      book.set_clinician("Dr. Bench");
      appointments_v1::Appointment appointment;
      status = appointment_stub->ScheduleAppointment(Context(absl::Seconds(10)).get(), book,
                                                     &appointment);
      if (!status.ok()) return base::FromGrpcStatus(status);
    }
  }
  return absl::OkStatus();
}

// Records calls made by callback threads.
class Recorder {
 public:
  void Add(std::vector<CallSample>& into, CallSample sample) {
    base::MutexLock lock(&mutex_);
    into.push_back(sample);
    --outstanding_;
    done_.SignalAll();
  }
  void Started() {
    base::MutexLock lock(&mutex_);
    ++outstanding_;
  }
  void WaitForAll() {
    base::MutexLock lock(&mutex_);
    while (outstanding_ > 0) done_.Wait(&mutex_);
  }

 private:
  base::Mutex mutex_;
  base::CondVar done_;
  int outstanding_ ABSL_GUARDED_BY(mutex_) = 0;
};

// Sends one unary call asynchronously. `method` forwards its four arguments to a stub's async
// method; `done(status, request, context)` runs on a gRPC thread when the call ends.
template <typename Response, typename Request, typename Method, typename Done>
void CallAsync(Method method, Request request, absl::Time deadline, Done done) {
  struct Call {
    grpc::ClientContext context;
    Request request;
    Response response;
  };
  auto* call = new Call;
  call->context.set_deadline(absl::ToChronoTime(deadline));
  call->request = std::move(request);
  method(&call->context, &call->request, &call->response, [call, done](grpc::Status status) {
    done(status, call->request, call->context);
    delete call;
  });
}

void SleepUntil(absl::Time when) {
  const absl::Duration wait = when - absl::Now();
  if (wait > absl::ZeroDuration()) absl::SleepFor(wait);
}

// A step on the broker: what the asynchronous variant's nats-server suffers. The synchronous
// variants have none, so it does nothing to them.
absl::Status ApplyBrokerStep(System& system, const Step& step) {
  testing_support::NatsServer* broker = system.broker();
  if (broker == nullptr) return absl::OkStatus();
  switch (step.kind) {
    case Step::Kind::kFreeze:
      broker->Freeze();
      return absl::OkStatus();
    case Step::Kind::kUnfreeze:
      broker->Unfreeze();
      return absl::OkStatus();
    case Step::Kind::kKill:
      broker->Kill();
      return absl::OkStatus();
    case Step::Kind::kRestart:
      return broker->Start();
    case Step::Kind::kSetFault:
    case Step::Kind::kClearFaults:
    case Step::Kind::kLockDatabase:
    case Step::Kind::kUnlockDatabase:
      break;
  }
  return absl::InvalidArgumentError("the broker takes no fault rules and has no database");
}

absl::Status ApplyStep(System& system, const Step& step) {
  if (step.service == Service::kBroker) return ApplyBrokerStep(system, step);
  // The batch job exists in the shared-database variant only.
  if (step.service == Service::kSyncJob && system.sync_job() == nullptr) return absl::OkStatus();
  testing_support::ServiceProcess& process = system.process(step.service);
  switch (step.kind) {
    case Step::Kind::kLockDatabase:
      return system.LockDatabase(step.service);
    case Step::Kind::kUnlockDatabase:
      system.UnlockDatabase(step.service);
      return absl::OkStatus();
    case Step::Kind::kFreeze:
      process.Freeze();
      return absl::OkStatus();
    case Step::Kind::kUnfreeze:
      process.Unfreeze();
      return absl::OkStatus();
    case Step::Kind::kKill:
      process.Kill();
      return absl::OkStatus();
    case Step::Kind::kRestart:
      return process.Start();
    case Step::Kind::kSetFault:
    case Step::Kind::kClearFaults:
      break;
  }
  auto admin = faults_v1::FaultInjection::NewStub(system.AdminChannel(step.service));
  auto context = Context(absl::Seconds(5));
  context->AddMetadata("authorization", absl::StrCat("Bearer ", kToken));
  if (step.kind == Step::Kind::kClearFaults) {
    faults_v1::ClearFaultsResponse cleared;
    return base::FromGrpcStatus(admin->ClearFaults(context.get(), {}, &cleared));
  }
  faults_v1::SetFaultRequest request;
  const auto parsed =
      google::protobuf::util::JsonStringToMessage(step.fault_json, request.mutable_fault());
  if (!parsed.ok()) return absl::InvalidArgumentError(parsed.message().as_string());
  faults_v1::Fault stored;
  return base::FromGrpcStatus(admin->SetFault(context.get(), request, &stored));
}

}  // namespace

int LostDeaths(const RunResult& run) {
  int lost = 0;
  for (const RunResult::EffectTimes& times : run.effects) {
    lost += times.visible < absl::ZeroDuration() ? 1 : 0;
  }
  return lost;
}

double Quantile(std::vector<double> values, double quantile) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1,
                         static_cast<std::size_t>(quantile * static_cast<double>(values.size())))];
}

namespace {

// Appends `events` PatientDied events to the outbox of the patients database at `path`, in one
// transaction, as RecordDeath would (for patients that exist nowhere: the consumers are stopped
// while the relay drains them).
absl::Status FillOutbox(const std::string& path, int events) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return absl::InternalError(absl::StrCat("cannot open ", path));
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* insert = nullptr;
  sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
  sqlite3_prepare_v2(db,
                     "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, event_type, "
                     "subject, payload, create_time) VALUES (?1, 'patient', ?2, "
                     "'hospital.patients.v1.PatientDied', 'hospital.patients.v1.patient_died', ?3, "
                     "?4)",
                     -1, &insert, nullptr);
  const absl::Time now = absl::Now();
  int failed = 0;
  for (int i = 0; i < events; ++i) {
    const std::string event_id = absl::StrCat("drain-", i);
    const std::string patient_id = absl::StrCat("drain-patient-", i);
    patients_v1::PatientDied died;
    died.set_event_id(event_id);
    died.set_patient_id(patient_id);
    *died.mutable_time_of_death() = server_kit::ToProtoTime(now);
    died.set_cause("benchmark");
    *died.mutable_record_time() = server_kit::ToProtoTime(now);
    const std::string payload = died.SerializeAsString();
    sqlite3_bind_text(insert, 1, event_id.data(), static_cast<int>(event_id.size()),
                      SQLITE_TRANSIENT);
    sqlite3_bind_text(insert, 2, patient_id.data(), static_cast<int>(patient_id.size()),
                      SQLITE_TRANSIENT);
    sqlite3_bind_blob(insert, 3, payload.data(), static_cast<int>(payload.size()),
                      SQLITE_TRANSIENT);
    sqlite3_bind_int64(insert, 4, absl::ToUnixMicros(now));
    failed += sqlite3_step(insert) == SQLITE_DONE ? 0 : 1;
    sqlite3_reset(insert);
  }
  sqlite3_finalize(insert);
  const bool committed = sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK;
  sqlite3_close(db);
  if (failed > 0 || !committed) return absl::InternalError("could not fill the outbox");
  return absl::OkStatus();
}

// The reason the synchronous death workflow gives when it cancels a patient's appointments
// (integration/sync/synchronous_death_workflow.cc).
constexpr char kDeathCancelReason[] = "patient deceased";

// Reads the morgue's and the appointments service's databases, read-only, to see whether a
// death's effects are committed, and whether either database has changed at all since it last
// looked (PRAGMA data_version), so that the watcher re-reads only after a commit.
class EffectReader final {
 public:
  EffectReader(const std::string& morgue_db, const std::string& appointments_db) {
    morgue_ = Open(morgue_db);
    appointments_ = Open(appointments_db);
    // Admitted, or admitted and since released by the bench's clerk (ActAsUsers).
    admitted_ =
        Prepare(morgue_, "SELECT 1 FROM admissions WHERE patient_id = ?1 AND status IN (1, 2)");
    morgue_version_ = Prepare(morgue_, "PRAGMA data_version");
    scheduled_ = Prepare(appointments_,
                         "SELECT COUNT(*) FROM appointments WHERE patient_id = ?1 AND status = 1");
    appointments_version_ = Prepare(appointments_, "PRAGMA data_version");
  }
  ~EffectReader() {
    for (sqlite3_stmt* statement :
         {admitted_, morgue_version_, scheduled_, appointments_version_}) {
      sqlite3_finalize(statement);
    }
    sqlite3_close(morgue_);
    sqlite3_close(appointments_);
  }
  EffectReader(const EffectReader&) = delete;
  EffectReader& operator=(const EffectReader&) = delete;

  // Whether another connection committed to the database since the previous call (true on the
  // first call, and when the version cannot be read).
  bool MorgueChanged() { return Changed(morgue_version_, &last_morgue_version_); }
  bool AppointmentsChanged() { return Changed(appointments_version_, &last_appointments_version_); }

  // False when the database cannot be read.
  bool Admitted(const std::string& patient_id) {
    if (admitted_ == nullptr) return false;
    sqlite3_bind_text(admitted_, 1, patient_id.data(), static_cast<int>(patient_id.size()),
                      SQLITE_TRANSIENT);
    const bool admitted = sqlite3_step(admitted_) == SQLITE_ROW;
    sqlite3_reset(admitted_);
    return admitted;
  }
  bool NoneScheduled(const std::string& patient_id) {
    if (scheduled_ == nullptr) return false;
    sqlite3_bind_text(scheduled_, 1, patient_id.data(), static_cast<int>(patient_id.size()),
                      SQLITE_TRANSIENT);
    const bool none_scheduled =
        sqlite3_step(scheduled_) == SQLITE_ROW && sqlite3_column_int(scheduled_, 0) == 0;
    sqlite3_reset(scheduled_);
    return none_scheduled;
  }

 private:
  static sqlite3* Open(const std::string& path) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      sqlite3_close(db);
      return nullptr;
    }
    sqlite3_busy_timeout(db, 1000);
    return db;
  }
  static sqlite3_stmt* Prepare(sqlite3* db, const char* sql) {
    sqlite3_stmt* statement = nullptr;
    if (db != nullptr) sqlite3_prepare_v2(db, sql, -1, &statement, nullptr);
    return statement;
  }
  static bool Changed(sqlite3_stmt* version, std::int64_t* last) {
    if (version == nullptr) return true;
    const std::int64_t now =
        sqlite3_step(version) == SQLITE_ROW ? sqlite3_column_int64(version, 0) : -1;
    sqlite3_reset(version);
    const bool changed = now < 0 || now != *last;
    *last = now;
    return changed;
  }

  sqlite3* morgue_ = nullptr;
  sqlite3* appointments_ = nullptr;
  sqlite3_stmt* admitted_ = nullptr;
  sqlite3_stmt* morgue_version_ = nullptr;
  sqlite3_stmt* scheduled_ = nullptr;
  sqlite3_stmt* appointments_version_ = nullptr;
  std::int64_t last_morgue_version_ = -1;
  std::int64_t last_appointments_version_ = -1;
};

// One scenario against one variant on fresh services: seed, warm up, run the load with the
// timeline of faults and the samplers beside it, then measure and wait for consistency.
class ScenarioRun final {
 public:
  ScenarioRun(const Scenario& scenario, const Variant& variant, const RunOptions& options,
              const std::string& dir)
      : scenario_(scenario),
        options_(options),
        variant_(variant),
        dir_(dir),
        system_(options, variant, dir, scenario.morgue_flags) {
    result_.scenario = scenario.name;
    result_.variant = variant.name;
    result_.duration = scenario.duration;
    result_.fault_windows = scenario.FaultWindows();
    deaths_ =
        static_cast<int>(scenario.deaths_per_second * absl::ToDoubleSeconds(scenario.duration));
    warmup_deaths_ = scenario.warmup_deaths >= 0 ? scenario.warmup_deaths : options.warmup_deaths;
  }
  ~ScenarioRun() {
    StopWatching();
    system_.Stop();
  }

  absl::StatusOr<RunResult> Run() {
    RETURN_IF_ERROR(system_.Start());
    RETURN_IF_ERROR(
        Seed(system_, deaths_ + warmup_deaths_, options_.appointments_per_patient, ids_));
    patients_ = patients_v1::PatientsService::NewStub(system_.Channel(Service::kPatients));
    WarmUp();
    AwaitWarmUpEffects();
    const double morgue_before = Deliveries(Service::kMorgue);
    const double appointments_before = Deliveries(Service::kAppointments);
    watcher_ = std::thread([this] { WatchEffects(); });
    RETURN_IF_ERROR(RunLoad());
    MeasureBreakersAndMemory();
    AwaitConsistency();
    StopWatching();
    if (deaths_ > 0) {
      // The downstreams' work per death of the load: every attempt or delivery of a death to
      // them, repeats included, until the services agreed (the batch variants deliver the last
      // deaths of the load after it ended).
      result_.morgue_attempts_per_death =
          std::max(0.0, Deliveries(Service::kMorgue) - morgue_before) / deaths_;
      result_.appointments_attempts_per_death =
          std::max(0.0, Deliveries(Service::kAppointments) - appointments_before) / deaths_;
    }
    MeasureDuplicates();
    for (Service service : {Service::kPatients, Service::kMorgue, Service::kAppointments}) {
      result_.busy_refusals[ServiceName(service)] =
          std::max(0.0, Counter(service, "hospital_rpc_refusals_total",
                                {"listener=\"public\"", "reason=\"threads_exhausted\""}));
    }
    return std::move(result_);
  }

 private:
  static constexpr char kAdmitMethod[] = "/hospital.morgue.v1.MorgueService/AdmitDeceased";
  static constexpr char kCancelMethod[] =
      "/hospital.appointments.v1.AppointmentsService/CancelPatientAppointments";

  absl::StatusOr<std::string> ScrapePatients() { return Scrape(Service::kPatients); }
  absl::StatusOr<std::string> Scrape(Service service) {
    return testing_support::ScrapeMetrics(system_.process(service).metrics_port());
  }

  // A counter of `service` summed over the samples matching `labels`, over the process's
  // lifetimes in this run: a process killed by the timeline was scraped just before (Kill),
  // so that its restart does not reset the count. -1 if the process cannot be scraped.
  double Counter(Service service, const std::string& name, const std::vector<std::string>& labels) {
    const absl::StatusOr<std::string> scrape = Scrape(service);
    if (!scrape.ok()) return -1;
    double sum = testing_support::SumSamples(*scrape, name, labels);
    base::MutexLock lock(&scrapes_mutex_);
    for (const std::string& before_kill : scrapes_before_kill_[service]) {
      sum += testing_support::SumSamples(before_kill, name, labels);
    }
    return sum;
  }

  // Where the counter of a pattern's applications to `target` (morgue or appointments) lives:
  // the target's consumer (broker, file drop), the batch job, or the patients service's direct
  // writes; each labels its samples with outcome (applied, duplicate...). Not for the
  // synchronous variants, whose downstreams count no deliveries.
  struct Applications {
    Service process;
    const char* metric;
    std::string of_target;  // The label selecting `target`'s samples.
  };
  Applications ApplicationsTo(Service target) const {
    const std::string name = ServiceName(target);
    switch (variant_.pattern) {
      case Pattern::kAsync:
        return {target, "hospital_events_consumed_total", absl::StrCat("consumer=\"", name, "\"")};
      case Pattern::kFileDrop:
        return {target, "hospital_file_drop_events_total", absl::StrCat("consumer=\"", name, "\"")};
      case Pattern::kSharedDbBatch:
        return {Service::kSyncJob, "hospital_batch_sync_events_total",
                absl::StrCat("target=\"", name, "\"")};
      case Pattern::kSync:
      case Pattern::kDirectDbWrite:
        break;
    }
    return {Service::kPatients, "hospital_batch_sync_events_total",
            absl::StrCat("target=\"", name, "\"")};
  }

  // Every attempt or delivery of a death to `target` (morgue or appointments) so far, repeats
  // included: the patients service's attempts (synchronous), else every application.
  double Deliveries(Service target) {
    if (variant_.pattern == Pattern::kSync) {
      return Counter(
          Service::kPatients, "resilience_attempts_total",
          {absl::StrCat("method=\"", target == Service::kMorgue ? kAdmitMethod : kCancelMethod,
                        "\"")});
    }
    const Applications applications = ApplicationsTo(target);
    return Counter(applications.process, applications.metric, {applications.of_target});
  }

  // Follows every acknowledged death until both of its effects are committed: the morgue's
  // admission, then no scheduled appointment left. It reads the two databases directly
  // (read-only, beside the services' own connections; WAL mode lets them), so that a fault
  // injected into the services' RPCs, or a frozen process, does not hide an effect that is
  // there. Every millisecond it reads each database's version; a death is checked when it is
  // new, and again only after a commit to the database it waits on. Re-reading every pending
  // death each round instead cost the bench several times its healthy CPU during a backlog,
  // taken from the very processes it measures on two shared cores.
  void WatchEffects() {
    EffectReader reader(dir_ + "/morgue.db", dir_ + "/appointments.db");
    while (!stop_watching_.load()) {
      std::vector<std::pair<std::string, absl::Duration>> arrived;
      {
        base::MutexLock lock(&watch_mutex_);
        arrived.swap(newly_acknowledged_);
      }
      const bool morgue_changed = reader.MorgueChanged();
      const bool appointments_changed = reader.AppointmentsChanged();
      std::vector<std::string> admitted_now;
      const auto check_admission = [&](const std::string& patient_id, absl::Duration acked) {
        if (!reader.Admitted(patient_id)) return false;
        awaiting_appointments_[patient_id] = acked;
        admitted_now.push_back(patient_id);
        return true;
      };
      for (const auto& [patient_id, acknowledged] : arrived) {
        if (!check_admission(patient_id, acknowledged)) {
          awaiting_admission_[patient_id] = acknowledged;
        }
      }
      if (morgue_changed) {
        for (auto it = awaiting_admission_.begin(); it != awaiting_admission_.end();) {
          it = check_admission(it->first, it->second) ? awaiting_admission_.erase(it) : ++it;
        }
      }
      const auto record_if_done = [&](const std::string& patient_id) {
        const auto it = awaiting_appointments_.find(patient_id);
        if (it == awaiting_appointments_.end() || !reader.NoneScheduled(patient_id)) return;
        effects_seen_.push_back({it->second, absl::Now() - start_});
        awaiting_appointments_.erase(it);
      };
      if (appointments_changed) {
        std::vector<std::string> waiting;
        for (const auto& entry : awaiting_appointments_) waiting.push_back(entry.first);
        for (const std::string& patient_id : waiting) record_if_done(patient_id);
      } else {
        for (const std::string& patient_id : admitted_now) record_if_done(patient_id);
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
  }

  // Ends the watcher; deaths whose effects it never saw are recorded as such.
  void StopWatching() {
    stop_watching_.store(true);
    if (watcher_.joinable()) watcher_.join();
    base::MutexLock lock(&watch_mutex_);
    for (const auto& [patient_id, acknowledged] : newly_acknowledged_) {
      awaiting_admission_[patient_id] = acknowledged;
    }
    newly_acknowledged_.clear();
    for (const RunResult::EffectTimes& times : effects_seen_) result_.effects.push_back(times);
    effects_seen_.clear();
    for (const auto* waiting : {&awaiting_admission_, &awaiting_appointments_}) {
      for (const auto& [patient_id, acknowledged] : *waiting) {
        result_.effects.push_back({acknowledged, absl::Seconds(-1)});
      }
    }
    awaiting_admission_.clear();
    awaiting_appointments_.clear();
  }

  // Repeats of a death that a downstream recognised (deliveries) and effects applied more than
  // once, from the counters of whoever applies them.
  void MeasureDuplicates() {
    if (variant_.pattern == Pattern::kSync) {
      result_.duplicate_deliveries =
          std::max(0.0, Counter(Service::kMorgue, "hospital_morgue_admissions_total",
                                {"result=\"already_admitted\""})) +
          std::max(0.0, Counter(Service::kAppointments,
                                "hospital_appointments_patient_cancellations_replayed_total", {}));
      // A repeat carries the workflow id that makes it idempotent: counted above.
      result_.duplicate_effects = -1;
      return;
    }
    result_.duplicate_deliveries = 0;
    result_.duplicate_effects = 0;
    for (Service target : {Service::kMorgue, Service::kAppointments}) {
      const Applications applications = ApplicationsTo(target);
      const auto count = [&](const char* outcome) {
        return std::max(0.0, Counter(applications.process, applications.metric,
                                     {applications.of_target, outcome}));
      };
      result_.duplicate_deliveries += count("outcome=\"duplicate\"");
      // One death per deceased patient, so one application each.
      result_.duplicate_effects +=
          std::max(0.0, count("outcome=\"applied\"") - result_.consistency.deceased);
    }
  }

  // Sends RecordDeath for `patient_id`; `on_done(status, context)` runs when it ends. Deaths
  // that succeed are remembered as acknowledged, for the consistency check.
  template <typename OnDone>
  void RecordDeath(const std::string& patient_id, const char* cause, absl::Time deadline,
                   OnDone on_done) {
    patients_v1::RecordDeathRequest request;
    request.set_patient_id(patient_id);
    request.set_cause(cause);
    *request.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now());
    recorder_.Started();
    CallAsync<patients_v1::RecordDeathResponse>(
        [this](auto&&... args) {
          patients_->async()->RecordDeath(std::forward<decltype(args)>(args)...);
        },
        std::move(request), deadline,
        [this, on_done](const grpc::Status& status, const patients_v1::RecordDeathRequest& sent,
                        const grpc::ClientContext& context) {
          if (status.ok()) {
            base::MutexLock lock(&acknowledged_mutex_);
            acknowledged_.insert(sent.patient_id());
          }
          on_done(status, context);
        });
  }

  // The last patients seeded, all at once, so that the measured load does not include the
  // first calls' cold start; their deaths are checked with the rest.
  void WarmUp() {
    std::vector<CallSample> ignored;
    for (int i = deaths_; i < deaths_ + warmup_deaths_; ++i) {
      RecordDeath(
          ids_[static_cast<std::size_t>(i)], "benchmark warm-up",
          absl::Now() + options_.client_deadline,
          [&](const grpc::Status&, const grpc::ClientContext&) { recorder_.Add(ignored, {}); });
    }
    recorder_.WaitForAll();
  }

  // The warm-up deaths' effects follow their acknowledgement in every pattern but the
  // synchronous ones: wait for them (up to 10 s), so that the load's figures count only its own
  // work.
  void AwaitWarmUpEffects() {
    if (variant_.pattern == Pattern::kSync) return;
    EffectReader reader(dir_ + "/morgue.db", dir_ + "/appointments.db");
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    for (int i = deaths_; i < deaths_ + warmup_deaths_ && absl::Now() < give_up;) {
      const std::string& patient_id = ids_[static_cast<std::size_t>(i)];
      if (reader.Admitted(patient_id) && reader.NoneScheduled(patient_id)) {
        ++i;
      } else {
        absl::SleepFor(absl::Milliseconds(20));
      }
    }
  }

  // The processes whose CPU the load is charged to: name -> (pid, CPU time so far).
  std::map<std::string, std::pair<pid_t, absl::Duration>> CpuNow() {
    std::map<std::string, std::pair<pid_t, absl::Duration>> now;
    for (Service service : {Service::kPatients, Service::kMorgue, Service::kAppointments}) {
      const pid_t pid = system_.process(service).pid();
      now[ServiceName(service)] = {pid, testing_support::CpuTime(pid)};
    }
    if (testing_support::NatsServer* broker = system_.broker(); broker != nullptr) {
      now[ServiceName(Service::kBroker)] = {broker->pid(), testing_support::CpuTime(broker->pid())};
    }
    if (testing_support::ServiceProcess* job = system_.sync_job(); job != nullptr) {
      now[ServiceName(Service::kSyncJob)] = {job->pid(), testing_support::CpuTime(job->pid())};
    }
    now["bench"] = {0, testing_support::CpuTime(0)};
    return now;
  }

  absl::Status RunLoad() {
    const auto cpu_before = CpuNow();
    start_ = absl::Now() + absl::Milliseconds(100);
    std::thread deaths([this] { SendDeaths(); });
    std::thread reads([this] { SendReads(); });
    std::thread people([this] { ActAsUsers(); });
    absl::Status timeline_status;
    std::thread timeline([&] { timeline_status = ApplyTimeline(); });
    std::thread sampler([this] { Sample(); });
    deaths.join();
    reads.join();
    people.join();
    timeline.join();
    recorder_.WaitForAll();
    load_end_ = absl::Now();
    load_done_.store(true);
    sampler.join();
    if (deaths_ > 0) {
      for (const auto& [name, after] : CpuNow()) {
        const auto before = cpu_before.find(name);
        if (before == cpu_before.end() || before->second.first != after.first ||
            before->second.second < absl::ZeroDuration() || after.second < absl::ZeroDuration()) {
          continue;
        }
        result_.cpu_ms_per_death[name] =
            absl::ToDoubleMilliseconds(after.second - before->second.second) / deaths_;
      }
    }
    return timeline_status;
  }

  void SendDeaths() {
    for (int i = 0; i < deaths_; ++i) {
      const absl::Duration offset = absl::Seconds(i / scenario_.deaths_per_second);
      SleepUntil(start_ + offset);
      const std::string& patient_id = ids_[static_cast<std::size_t>(i)];
      RecordDeath(patient_id, "benchmark", start_ + offset + options_.client_deadline,
                  [this, offset, patient_id](const grpc::Status& status,
                                             const grpc::ClientContext& context) {
                    if (status.ok()) {
                      base::MutexLock lock(&watch_mutex_);
                      newly_acknowledged_.emplace_back(patient_id, absl::Now() - start_);
                    }
                    const bool rejected_by_breaker =
                        server_kit::ErrorReasonOf(context) == server_kit::kReasonCircuitOpen;
                    recorder_.Add(result_.deaths, {offset, absl::Now() - (start_ + offset),
                                                   status.error_code(), rejected_by_breaker});
                  });
    }
  }

  // Background reads, alternating GetPatient (patients) and ListAppointments (appointments):
  // what a fault does to callers that never record a death.
  void SendReads() {
    auto appointments =
        appointments_v1::AppointmentsService::NewStub(system_.Channel(Service::kAppointments));
    std::mt19937 random(42);
    const int reads =
        static_cast<int>(scenario_.reads_per_second * absl::ToDoubleSeconds(scenario_.duration));
    for (int i = 0; i < reads; ++i) {
      const absl::Duration offset = absl::Seconds(i / scenario_.reads_per_second);
      SleepUntil(start_ + offset);
      const std::string& patient_id =
          ids_[std::uniform_int_distribution<std::size_t>(0, ids_.size() - 1)(random)];
      const absl::Time deadline = start_ + offset + options_.client_deadline;
      recorder_.Started();
      const auto sample = [this, offset](std::vector<CallSample>* into) {
        return [this, offset, into](const grpc::Status& status, const auto&,
                                    const grpc::ClientContext&) {
          recorder_.Add(*into, {offset, absl::Now() - (start_ + offset), status.error_code()});
        };
      };
      if (i % 2 == 0) {
        patients_v1::GetPatientRequest request;
        request.set_patient_id(patient_id);
        CallAsync<patients_v1::Patient>(
            [this](auto&&... args) {
              patients_->async()->GetPatient(std::forward<decltype(args)>(args)...);
            },
            std::move(request), deadline, sample(&result_.reads));
      } else {
        appointments_v1::ListAppointmentsRequest request;
        request.set_patient_id(patient_id);
        CallAsync<appointments_v1::ListAppointmentsResponse>(
            [&](auto&&... args) {
              appointments->async()->ListAppointments(std::forward<decltype(args)>(args)...);
            },
            std::move(request), deadline, sample(&result_.appointment_reads));
      }
    }
  }

  // The people using the system while deaths are recorded, one action at a time, each aimed at
  // the patient whose death was sent a moment ago (so often still in flight): a clerk releases
  // the body, the patient cancels one of their appointments, or books a new one (in turn). What
  // the services acknowledge goes into user_actions_ for the checker; what they refuse is
  // counted, with no rule (refusing is their right while a death is unsettled).
  void ActAsUsers() {
    if (scenario_.user_actions_per_second <= 0 || deaths_ == 0) return;
    auto morgue = morgue_v1::MorgueService::NewStub(system_.Channel(Service::kMorgue));
    auto appointments =
        appointments_v1::AppointmentsService::NewStub(system_.Channel(Service::kAppointments));
    std::mt19937 random(7);
    const bool periodic =
        variant_.pattern == Pattern::kSharedDbBatch || variant_.pattern == Pattern::kFileDrop;
    const int lookback =
        periodic ? static_cast<int>(2.5 * kBatchIntervalSeconds * scenario_.deaths_per_second) : 3;
    const int actions = static_cast<int>(scenario_.user_actions_per_second *
                                         absl::ToDoubleSeconds(scenario_.duration));
    for (int i = 0; i < actions; ++i) {
      const absl::Duration offset = absl::Seconds(i / scenario_.user_actions_per_second);
      SleepUntil(start_ + offset);
      // The death sent 0 to 3 sends before now; for the patterns that move deaths every
      // interval, one sent up to two and a half intervals before (still unsettled, and an
      // admission to release is there for some).
      const int sent =
          static_cast<int>(absl::ToDoubleSeconds(offset) * scenario_.deaths_per_second) -
          std::uniform_int_distribution<int>(0, lookback)(random);
      if (sent < 0 || sent >= deaths_) continue;
      const std::string& patient_id = ids_[static_cast<std::size_t>(sent)];
      bool attempted = true;  // False when there was nothing to act on (no admission yet...).
      bool acknowledged = false;
      switch (i % 3) {
        case 0: {
          morgue_v1::GetAdmissionRequest get;
          get.set_patient_id(patient_id);
          morgue_v1::Admission admission;
          if (!morgue->GetAdmission(Context(absl::Seconds(1)).get(), get, &admission).ok()) {
            attempted = false;
            break;
          }
          morgue_v1::ReleaseBodyRequest release;
          release.set_admission_id(admission.admission_id());
          release.set_funeral_home("Hill & Sons");
          morgue_v1::Admission released;
          acknowledged =
              morgue->ReleaseBody(Context(absl::Seconds(1)).get(), release, &released).ok();
          if (acknowledged) user_actions_.released.insert(patient_id);
          break;
        }
        case 1: {
          appointments_v1::ListAppointmentsRequest list;
          list.set_patient_id(patient_id);
          appointments_v1::ListAppointmentsResponse listed;
          attempted = false;
          if (!appointments->ListAppointments(Context(absl::Seconds(1)).get(), list, &listed)
                   .ok()) {
            break;
          }
          // A scheduled one, or one a death cancelled (the patient may not know yet): either
          // way the patient's own cancellation must stand if the death is undone.
          for (const auto& appointment : listed.appointments()) {
            if (user_actions_.cancelled_by_patient.count(appointment.appointment_id()) != 0 ||
                (appointment.status() != appointments_v1::SCHEDULED &&
                 appointment.cancel_reason() != kDeathCancelReason)) {
              continue;
            }
            attempted = true;
            appointments_v1::CancelAppointmentRequest cancel;
            cancel.set_appointment_id(appointment.appointment_id());
            cancel.set_reason(absl::StrCat("patient's own reason ", i));
            appointments_v1::Appointment cancelled;
            acknowledged =
                appointments->CancelAppointment(Context(absl::Seconds(1)).get(), cancel, &cancelled)
                    .ok();
            if (acknowledged) {
              user_actions_.cancelled_by_patient[appointment.appointment_id()] = cancel.reason();
            }
            break;
          }
          break;
        }
        default: {
          appointments_v1::ScheduleAppointmentRequest book;
          book.set_patient_id(patient_id);
          book.set_clinician("Dr. Snow");
          *book.mutable_scheduled_time() =
              server_kit::ToProtoTime(absl::Now() + absl::Hours(24 * 30) + absl::Minutes(i));
          appointments_v1::Appointment booked;
          acknowledged =
              appointments->ScheduleAppointment(Context(absl::Seconds(1)).get(), book, &booked)
                  .ok();
          if (acknowledged) user_actions_.booked[booked.appointment_id()] = patient_id;
          break;
        }
      }
      if (!attempted) continue;
      RunResult::ActionCounts& counts = i % 3 == 0   ? result_.releases
                                        : i % 3 == 1 ? result_.own_cancellations
                                                     : result_.bookings;
      ++(acknowledged ? counts.acknowledged : counts.refused);
    }
  }

  absl::Status ApplyTimeline() {
    absl::Status first_error;
    for (const Step& step : scenario_.TimelineFor(variant_)) {
      SleepUntil(start_ + step.at);
      if (step.kind == Step::Kind::kKill && step.service != Service::kBroker &&
          (step.service != Service::kSyncJob || system_.sync_job() != nullptr)) {
        // Its counters die with it: keep what they said (see Counter).
        if (absl::StatusOr<std::string> scrape = Scrape(step.service); scrape.ok()) {
          base::MutexLock lock(&scrapes_mutex_);
          scrapes_before_kill_[step.service].push_back(*std::move(scrape));
        }
      }
      if (absl::Status applied = ApplyStep(system_, step); !applied.ok() && first_error.ok()) {
        first_error = applied;
      }
    }
    return first_error;
  }

  // Every 100 ms during the load: the patients service's breakers and its owed undo calls.
  void Sample() {
    auto admin = resilience::v1::ResilienceAdmin::NewStub(system_.AdminChannel(Service::kPatients));
    while (!load_done_.load()) {
      if (const absl::StatusOr<std::string> scrape = ScrapePatients(); scrape.ok()) {
        result_.pending_compensations.emplace_back(
            absl::Now() - start_,
            testing_support::SumSamples(*scrape, "hospital_death_compensations_pending", {}));
        if (variant_.UsesOutbox()) SampleBacklog(*scrape);
      }
      resilience::v1::ListCircuitBreakersResponse breakers;
      if (admin->ListCircuitBreakers(Context(absl::Milliseconds(500)).get(), {}, &breakers).ok()) {
        for (const auto& breaker : breakers.circuit_breakers()) {
          result_.breakers.push_back(
              {absl::Now() - start_, breaker.target(),
               resilience::v1::CircuitBreakerStatus::State_Name(breaker.state())});
        }
      }
      if (options_.progress) {
        options_.progress(std::min(1.0, absl::ToDoubleSeconds(absl::Now() - start_) /
                                            absl::ToDoubleSeconds(scenario_.duration)));
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
  }

  // Outbox depth plus the larger consumer backlog (each consumer gets every event; the file
  // drop's consumers keep no such gauge: the files waiting are the outbox's published events).
  void SampleBacklog(const std::string& patients_scrape) {
    double consumers = 0;
    if (variant_.pattern == Pattern::kAsync) {
      for (Service service : {Service::kMorgue, Service::kAppointments}) {
        if (const absl::StatusOr<std::string> scrape = Scrape(service); scrape.ok()) {
          consumers = std::max(
              consumers, testing_support::SumSamples(*scrape, "hospital_consumer_pending", {}));
        }
      }
    }
    result_.peak_backlog =
        std::max(result_.peak_backlog,
                 testing_support::SumSamples(patients_scrape, "hospital_outbox_unpublished", {}) +
                     consumers);
  }

  void MeasureBreakersAndMemory() {
    // Each sample stands for the 100 ms until the next one; every sampled target gets an entry.
    for (const BreakerSample& sample : result_.breakers) {
      double& open_seconds = result_.breaker_open_seconds[sample.target];
      if (sample.state == "OPEN" || sample.state == "FORCED_OPEN") open_seconds += 0.1;
    }
    for (Service service : {Service::kPatients, Service::kMorgue, Service::kAppointments}) {
      result_.peak_resident_bytes[ServiceName(service)] =
          testing_support::PeakResidentBytes(system_.process(service).pid());
    }
    if (testing_support::NatsServer* broker = system_.broker(); broker != nullptr) {
      result_.peak_resident_bytes[ServiceName(Service::kBroker)] =
          testing_support::PeakResidentBytes(broker->pid());
    }
    if (testing_support::ServiceProcess* job = system_.sync_job(); job != nullptr) {
      result_.peak_resident_bytes[ServiceName(Service::kSyncJob)] =
          testing_support::PeakResidentBytes(job->pid());
    }
  }

  // Checks consistency until it holds (background compensations may still be running), and
  // how long after the last fault the services came to agree.
  void AwaitConsistency() {
    auto morgue = morgue_v1::MorgueService::NewStub(system_.Channel(Service::kMorgue));
    auto appointments =
        appointments_v1::AppointmentsService::NewStub(system_.Channel(Service::kAppointments));
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    absl::Duration last_fault_end = load_end_ - start_;
    if (const auto windows = scenario_.FaultWindows(); !windows.empty()) {
      last_fault_end = absl::ZeroDuration();
      for (const auto& window : windows) last_fault_end = std::max(last_fault_end, window.second);
    }
    result_.time_to_consistency = absl::Seconds(-1);
    for (bool first_check = true;; first_check = false) {
      result_.consistency =
          CheckConsistency(*patients_, *morgue, *appointments, ids_, acknowledged_, user_actions_);
      const absl::Time checked = absl::Now();
      if (!result_.consistency.incomplete && result_.consistency.violations == 0) {
        const absl::Duration converged =
            first_check ? ConvergedDuringLoad(last_fault_end, checked) : checked - start_;
        result_.time_to_consistency = std::max(absl::ZeroDuration(), converged - last_fault_end);
        return;
      }
      if (checked > give_up) return;
      absl::SleepFor(absl::Milliseconds(100));
    }
  }

  // When the services agreed, if they did by the end of the load: at the first sample that
  // found no owed undo call after the last that found some.
  absl::Duration ConvergedDuringLoad(absl::Duration last_fault_end, absl::Time checked) const {
    absl::Duration converged = last_fault_end;
    bool owed = false;
    for (const auto& [offset, pending] : result_.pending_compensations) {
      if (owed && pending == 0) converged = std::max(converged, offset);
      owed = pending > 0;
    }
    return owed ? checked - start_ : converged;
  }

  const Scenario& scenario_;
  const RunOptions& options_;
  const Variant variant_;
  const std::string dir_;
  System system_;
  RunResult result_;
  int deaths_ = 0;
  int warmup_deaths_ = 0;  // Scenario::warmup_deaths, or the options' default.
  std::vector<std::string> ids_;
  std::unique_ptr<patients_v1::PatientsService::Stub> patients_;
  Recorder recorder_;
  base::Mutex acknowledged_mutex_;
  std::set<std::string> acknowledged_;  // Read after every call has ended.
  UserActions user_actions_;            // Written by ActAsUsers only; read after it ended.
  absl::Time start_;
  absl::Time load_end_;
  std::atomic<bool> load_done_{false};
  // Deaths acknowledged since the watcher last looked: patient id, acknowledged at.
  base::Mutex watch_mutex_;
  std::vector<std::pair<std::string, absl::Duration>> newly_acknowledged_
      ABSL_GUARDED_BY(watch_mutex_);
  // The watcher thread's own (read by StopWatching after joining it): deaths waiting for the
  // admission, deaths admitted and waiting for their appointments to be cancelled (patient id
  // -> acknowledged at), and the effects seen complete.
  std::map<std::string, absl::Duration> awaiting_admission_;
  std::map<std::string, absl::Duration> awaiting_appointments_;
  std::vector<RunResult::EffectTimes> effects_seen_;
  std::atomic<bool> stop_watching_{false};
  std::thread watcher_;
  // Scrapes of processes taken just before the timeline killed them (Counter).
  base::Mutex scrapes_mutex_;
  std::map<Service, std::vector<std::string>> scrapes_before_kill_ ABSL_GUARDED_BY(scrapes_mutex_);
};

}  // namespace

absl::StatusOr<RunResult> RunScenario(const Scenario& scenario, const Variant& variant,
                                      const RunOptions& options) {
  const std::string dir = absl::StrCat(options.work_dir, "/", scenario.name, "-", variant.name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return ScenarioRun(scenario, variant, options, dir).Run();
}

namespace {

CapacityStep Summarise(double rate, const std::vector<CallSample>& samples) {
  CapacityStep step;
  step.rate = rate;
  step.calls = static_cast<int>(samples.size());
  for (const CallSample& sample : samples) step.ok += sample.code == grpc::StatusCode::OK ? 1 : 0;
  std::vector<double> latencies;
  for (const CallSample& sample : samples) {
    latencies.push_back(absl::ToDoubleMilliseconds(sample.latency));
  }
  step.p99_ms = Quantile(std::move(latencies), 0.99);
  return step;
}

}  // namespace

absl::StatusOr<CapacityStep> EchoStep(const RunOptions& options, const std::string& echo_binary,
                                      const EchoShape& shape, double rate,
                                      absl::Duration duration) {
  const std::string dir = absl::StrCat(options.work_dir, "/echo-", shape.api, "-", shape.fan_out,
                                       "-", static_cast<int>(rate));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  // Leaves first, so that the front server's channels find them listening.
  std::vector<std::unique_ptr<testing_support::ServiceProcess>> leaves;
  std::vector<std::string> leaf_addresses;
  for (int i = 0; i < shape.fan_out; ++i) {
    const std::string name = absl::StrCat(dir, "/leaf-", i);
    leaves.push_back(std::make_unique<testing_support::ServiceProcess>(
        echo_binary, std::vector<std::string>{"--api=callback"}, name + ".log", name + ".ports",
        /*with_metrics=*/false, /*with_admin=*/false));
    if (absl::Status started = leaves.back()->Start(); !started.ok()) return started;
    leaf_addresses.push_back(leaves.back()->address());
  }
  std::vector<std::string> flags = {absl::StrCat("--api=", shape.api)};
  if (!leaf_addresses.empty()) {
    flags.push_back(absl::StrCat("--fan_out_to=", absl::StrJoin(leaf_addresses, ",")));
  }
  testing_support::ServiceProcess echo(echo_binary, flags, dir + "/echo.log", dir + "/echo.ports",
                                       /*with_metrics=*/false, /*with_admin=*/false);
  if (absl::Status started = echo.Start(); !started.ok()) return started;
  auto stub = echo::v1::EchoService::NewStub(Channel(echo));
  Recorder recorder;
  std::vector<CallSample> samples;
  const int calls = static_cast<int>(rate * absl::ToDoubleSeconds(duration));
  const absl::Time start = absl::Now() + absl::Milliseconds(100);
  for (int i = 0; i < calls; ++i) {
    const absl::Duration offset = absl::Seconds(i / rate);
    SleepUntil(start + offset);
    echo::v1::EchoRequest request;
    request.set_message("ping");
    recorder.Started();
    CallAsync<echo::v1::EchoResponse>(
        [&](auto&&... args) { stub->async()->Echo(std::forward<decltype(args)>(args)...); },
        std::move(request), start + offset + options.client_deadline,
        [&, offset](const grpc::Status& status, const echo::v1::EchoRequest&,
                    const grpc::ClientContext&) {
          recorder.Add(samples, {offset, absl::Now() - (start + offset), status.error_code()});
        });
  }
  recorder.WaitForAll();
  echo.Terminate();
  for (auto& leaf : leaves) leaf->Terminate();
  return Summarise(rate, samples);
}

absl::StatusOr<CapacityStep> DeathStep(const RunOptions& options, const Variant& variant,
                                       double rate, absl::Duration duration) {
  Scenario scenario{absl::StrCat("capacity-", static_cast<int>(rate)), "", duration, rate, 0, {}};
  scenario.user_actions_per_second = 0;  // Capacity is RecordDeath's alone.
  absl::StatusOr<RunResult> run = RunScenario(scenario, variant, options);
  if (!run.ok()) return run.status();
  CapacityStep step = Summarise(rate, run->deaths);
  step.peak_rss_mib = PeakResidentMiB(*run);
  step.broker_rss_mib = BrokerResidentMiB(*run);
  if (!run->cpu_ms_per_death.empty()) {
    double under_test = 0;
    double bench = 0;
    for (const auto& [process, ms] : run->cpu_ms_per_death) {
      (process == "bench" ? bench : under_test) += ms;
    }
    step.cpu_ms_per_call = under_test;
    step.bench_cpu_ms_per_call = bench;
  }
  absl::Duration last_visible = absl::ZeroDuration();
  for (const RunResult::EffectTimes& times : run->effects) {
    if (times.visible < absl::ZeroDuration()) {
      step.drained_after_s = std::numeric_limits<double>::infinity();
      return step;
    }
    last_visible = std::max(last_visible, times.visible);
  }
  step.drained_after_s = std::max(0.0, absl::ToDoubleSeconds(last_visible - duration));
  return step;
}

absl::StatusOr<RelayDrain> MeasureRelayDrain(const RunOptions& options, const Variant& variant,
                                             int events) {
  const std::string dir = absl::StrCat(options.work_dir, "/relay-drain-", variant.name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  System system(options, variant, dir);
  RETURN_IF_ERROR(system.Start());
  testing_support::NatsServer* broker = system.broker();
  if (broker == nullptr) return absl::InvalidArgumentError("relay drain: not an async variant");
  system.process(Service::kMorgue).Kill();
  system.process(Service::kAppointments).Kill();
  broker->Kill();
  RETURN_IF_ERROR(FillOutbox(dir + "/patients.db", events));
  const int metrics_port = system.process(Service::kPatients).metrics_port();
  auto unpublished = [&]() -> double {
    absl::StatusOr<std::string> scrape = testing_support::ScrapeMetrics(metrics_port);
    return scrape.ok() ? testing_support::SumSamples(*scrape, "hospital_outbox_unpublished", {})
                       : -1;
  };
  // The relay's gauges follow its passes, which keep failing while the broker is down.
  const absl::Time filled_by = absl::Now() + absl::Seconds(30);
  while (unpublished() < events && absl::Now() < filled_by) absl::SleepFor(absl::Milliseconds(20));
  RETURN_IF_ERROR(broker->Start());
  const absl::Time started = absl::Now();
  absl::Time first = absl::InfiniteFuture();
  const absl::Time give_up = started + absl::Seconds(120);
  while (absl::Now() < give_up) {
    const double left = unpublished();
    if (left >= 0 && left < events && first == absl::InfiniteFuture()) first = absl::Now();
    if (left == 0) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  const absl::Time empty = absl::Now();
  if (empty >= give_up) return absl::DeadlineExceededError("relay drain: not drained in 120 s");
  RelayDrain drain;
  drain.events = events;
  drain.seconds_to_first = absl::ToDoubleSeconds(first - started);
  drain.seconds_to_empty = absl::ToDoubleSeconds(empty - first);
  drain.events_per_second = events / std::max(1e-3, drain.seconds_to_empty);
  drain.broker_rss_mib =
      static_cast<double>(testing_support::PeakResidentBytes(broker->pid())) / 1048576.0;
  system.Stop();
  return drain;
}

}  // namespace fault_bench
