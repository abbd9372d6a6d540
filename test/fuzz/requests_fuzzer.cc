// libFuzzer target: any bytes as a request to any method of the three services, handled by the
// real handlers on real (temporary) databases. The first byte picks the method, the rest is the
// request's wire form; bytes gRPC could not parse are skipped, as gRPC would refuse them. Every
// answer must be OK or a deliberate error (never INTERNAL), and a request that is refused must
// leave every database as it was.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/server_context.h>
#include <prometheus/registry.h>

#include "appointments/appointments_repository.h"
#include "appointments/appointments_service.h"
#include "base/testing/fake_environment.h"
#include "integration/sync/synchronous_death_workflow.h"
#include "messaging/inbox.h"
#include "messaging/inbox_service.h"
#include "morgue/morgue_repository.h"
#include "morgue/morgue_service.h"
#include "morgue/patient_died_handler.h"
#include "patients/patients_repository.h"
#include "patients/patients_service.h"
#include "server_kit/sqlite.h"
#include "testing_support/service_process.h"

namespace {

namespace morgue_v1 = hospital::morgue::v1;
namespace appointments_v1 = hospital::appointments::v1;
namespace patients_v1 = hospital::patients::v1;

// Downstreams that accept every call at once: the fuzzer exercises the patients service's own
// handling, not the network.
class AcceptingDownstreams final : public integration::sync::Downstreams {
 public:
  std::string RejectingTarget() override { return ""; }
  void AdmitDeceased(const morgue_v1::AdmitDeceasedRequest&, absl::Time,
                     Done<morgue_v1::AdmitDeceasedResponse> done) override {
    done(absl::OkStatus(), {});
  }
  void CancelPatientAppointments(
      const appointments_v1::CancelPatientAppointmentsRequest&, absl::Time,
      Done<appointments_v1::CancelPatientAppointmentsResponse> done) override {
    done(absl::OkStatus(), {});
  }
  void CancelAdmission(const morgue_v1::CancelAdmissionRequest&, absl::Time,
                       Done<morgue_v1::CancelAdmissionResponse> done) override {
    done(absl::OkStatus(), {});
  }
  void RestorePatientAppointments(
      const appointments_v1::RestorePatientAppointmentsRequest&, absl::Time,
      Done<appointments_v1::RestorePatientAppointmentsResponse> done) override {
    done(absl::OkStatus(), {});
  }
  void ConfirmAdmission(const morgue_v1::ConfirmAdmissionRequest&, absl::Time,
                        Done<morgue_v1::ConfirmAdmissionResponse> done) override {
    done(absl::OkStatus(), {});
  }
};

std::unique_ptr<server_kit::Database> OpenDatabase(const std::string& path,
                                                   const server_kit::Schema& migrations) {
  server_kit::DatabaseOptions options;
  options.synchronous = "NORMAL";  // Durability is not what is fuzzed; speed is welcome.
  absl::StatusOr<std::unique_ptr<server_kit::Database>> database =
      server_kit::SqliteDatabase::Open(path, migrations.sqlite, options);
  if (!database.ok()) {
    std::fprintf(stderr, "%s\n", database.status().ToString().c_str());
    std::abort();
  }
  return *std::move(database);
}

// Every row of every table, as text: equal before and after a refused request.
std::string Contents(server_kit::Database& database) {
  std::string contents;
  const absl::Status read = database.WithSession([&](server_kit::Database::Session& session) {
    std::vector<std::string> tables;
    absl::Status listed =
        session.Prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .ForEachRow(
                [&](const server_kit::Statement& row) { tables.push_back(row.ColumnText(0)); });
    if (!listed.ok()) return listed;
    for (const std::string& table : tables) {
      contents += table + ":";
      absl::Status rows = session.Prepare("SELECT * FROM \"" + table + "\" ORDER BY rowid")
                              .ForEachRow([&](const server_kit::Statement& row) {
                                for (int i = 0; i < row.ColumnCount(); ++i) {
                                  contents += row.ColumnText(i) + "\x1f";
                                }
                                contents += "\x1e";
                              });
      if (!rows.ok()) return rows;
    }
    return absl::OkStatus();
  });
  if (!read.ok()) std::abort();
  return contents;
}

struct System {
  System()
      : dir(),
        patients_db(OpenDatabase(dir.path() + "/patients.db", patients::Migrations())),
        morgue_db(OpenDatabase(dir.path() + "/morgue.db", morgue::Migrations())),
        appointments_db(OpenDatabase(dir.path() + "/appointments.db", appointments::Migrations())),
        patients_repository(*patients_db),
        morgue_repository(*morgue_db),
        appointments_repository(*appointments_db),
        workflow(patients_repository, downstreams, env.environment(), registry),
        patients_service(patients_repository, workflow, env.clock(), registry),
        morgue_service(morgue_repository, env.clock(), registry),
        appointments_service(appointments_repository, env.clock(), registry),
        morgue_inbox(*morgue_db, morgue_handler, env.clock()),
        morgue_inbox_service(morgue_inbox) {}

  testing_support::TempDir dir;
  base::testing::FakeEnvironment env;
  prometheus::Registry registry;
  AcceptingDownstreams downstreams;
  std::unique_ptr<server_kit::Database> patients_db;
  std::unique_ptr<server_kit::Database> morgue_db;
  std::unique_ptr<server_kit::Database> appointments_db;
  patients::PatientsRepository patients_repository;
  morgue::MorgueRepository morgue_repository;
  appointments::AppointmentsRepository appointments_repository;
  integration::sync::SynchronousDeathWorkflow workflow;
  patients::PatientsService patients_service;
  morgue::MorgueService morgue_service;
  appointments::AppointmentsService appointments_service;
  morgue::PatientDiedHandler morgue_handler;
  messaging::Inbox morgue_inbox;
  messaging::InboxService morgue_inbox_service;
};

System& TheSystem() {
  static System* const system = new System();
  return *system;
}

// Parses `bytes` as Request and calls `handler`; returns false if gRPC would not have parsed it.
template <typename Request, typename Response, typename Service>
bool Call(Service& service,
          grpc::Status (Service::*handler)(grpc::ServerContext*, const Request*, Response*),
          const std::string& bytes, grpc::Status& status) {
  Request request;
  if (!request.ParseFromString(bytes)) return false;
  grpc::ServerContext context;
  Response response;
  status = (service.*handler)(&context, &request, &response);
  return true;
}

using Method = std::function<bool(System&, const std::string&, grpc::Status&)>;

// Every method the three services serve, in a fixed order (the first input byte picks one).
const std::vector<Method>& Methods() {
  using appointments::AppointmentsService;
  using morgue::MorgueService;
  using patients::PatientsService;
  static const auto* const methods = new std::vector<Method>{
#define HOSPITAL_FUZZ_METHOD(member, Service, Name)       \
  [](System& s, const std::string& b, grpc::Status& st) { \
    return Call(s.member, &Service::Name, b, st);         \
  }
      HOSPITAL_FUZZ_METHOD(patients_service, PatientsService, CreatePatient),
      HOSPITAL_FUZZ_METHOD(patients_service, PatientsService, GetPatient),
      HOSPITAL_FUZZ_METHOD(patients_service, PatientsService, ListPatients),
      HOSPITAL_FUZZ_METHOD(patients_service, PatientsService, UpdateContactDetails),
      HOSPITAL_FUZZ_METHOD(patients_service, PatientsService, RecordDeath),
      HOSPITAL_FUZZ_METHOD(morgue_service, MorgueService, AdmitDeceased),
      HOSPITAL_FUZZ_METHOD(morgue_service, MorgueService, GetAdmission),
      HOSPITAL_FUZZ_METHOD(morgue_service, MorgueService, ListAdmissions),
      HOSPITAL_FUZZ_METHOD(morgue_service, MorgueService, ReleaseBody),
      HOSPITAL_FUZZ_METHOD(morgue_service, MorgueService, CancelAdmission),
      HOSPITAL_FUZZ_METHOD(appointments_service, AppointmentsService, ScheduleAppointment),
      HOSPITAL_FUZZ_METHOD(appointments_service, AppointmentsService, GetAppointment),
      HOSPITAL_FUZZ_METHOD(appointments_service, AppointmentsService, ListAppointments),
      HOSPITAL_FUZZ_METHOD(appointments_service, AppointmentsService, CancelAppointment),
      HOSPITAL_FUZZ_METHOD(appointments_service, AppointmentsService, CancelPatientAppointments),
      HOSPITAL_FUZZ_METHOD(appointments_service, AppointmentsService, RestorePatientAppointments),
      HOSPITAL_FUZZ_METHOD(morgue_inbox_service, messaging::InboxService, ListRejectedEvents),
      HOSPITAL_FUZZ_METHOD(morgue_service, MorgueService, ConfirmAdmission),
#undef HOSPITAL_FUZZ_METHOD
  };
  return *methods;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  System& system = TheSystem();
  const auto& methods = Methods();
  const Method& method = methods[data[0] % methods.size()];
  const std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::string before = Contents(*system.patients_db) + Contents(*system.morgue_db) +
                             Contents(*system.appointments_db);
  grpc::Status status;
  if (!method(system, bytes, status)) return 0;
  if (status.error_code() == grpc::StatusCode::INTERNAL ||
      status.error_code() == grpc::StatusCode::UNKNOWN) {
    std::fprintf(stderr, "method %d answered %d: %s\n", data[0] % static_cast<int>(methods.size()),
                 static_cast<int>(status.error_code()), status.error_message().c_str());
    std::abort();
  }
  if (!status.ok()) {
    const std::string after = Contents(*system.patients_db) + Contents(*system.morgue_db) +
                              Contents(*system.appointments_db);
    if (after != before) {
      std::fprintf(stderr, "a refused request changed a database: %s\n",
                   status.error_message().c_str());
      std::abort();
    }
  }
  system.env.Advance(absl::Milliseconds(1));
  return 0;
}
