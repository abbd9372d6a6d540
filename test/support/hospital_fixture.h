// The three services as child processes on loopback, each with a fresh database in one
// temporary directory, and clients for them.
#ifndef HOSPITAL_TEST_SUPPORT_HOSPITAL_FIXTURE_H_
#define HOSPITAL_TEST_SUPPORT_HOSPITAL_FIXTURE_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/security/credentials.h>

#include "grpc/health/v1/health.grpc.pb.h"
#include "hospital/appointments/v1/appointments.grpc.pb.h"
#include "hospital/faults/v1/faults.grpc.pb.h"
#include "hospital/messaging/v1/inbox.grpc.pb.h"
#include "hospital/morgue/v1/morgue.grpc.pb.h"
#include "hospital/patients/v1/patients.grpc.pb.h"
#include "server_kit/database.h"
#include "support/test_database.h"
#include "testing_support/nats_server.h"
#include "testing_support/service_process.h"

namespace testing_support {

// A policy for tests: short deadlines and backoff, a breaker that opens after a few failures.
extern const char kTestPolicy[];

// In every flag below, "{dir}" stands for the hospital's directory (where the databases are).
struct HospitalOptions {
  // Empty: the patients service runs without --resilience_policy.
  std::string policy_json = kTestPolicy;
  bool with_metrics = false;
  std::vector<std::string> patients_flags;
  std::vector<std::string> morgue_flags;
  // When set, every service serves FaultInjection on its admin listener, and changes there
  // (faults, breakers) need this token.
  std::string admin_token;
  // Health re-checked this often (readiness, and not_serving faults).
  std::string health_check_interval = "1s";
  // Non-empty: all three run --death_workflow=async against this NATS server.
  std::string nats_url;
  // Flags for every service in async mode (stream and consumer settings).
  std::vector<std::string> messaging_flags;
  // Flags for all three services, in any mode.
  std::vector<std::string> every_service_flags;
  std::vector<std::string> appointments_flags;
  // Environment variables ("NAME=value") by service ("patients", "morgue", "appointments"), such
  // as HOSPITAL_CRASH_AT (base/crash_point.h); Hospital::SetEnvironment changes them later.
  std::map<std::string, std::vector<std::string>> environment;
  // How the test's own clients connect (TLS when the services speak it); null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> client_credentials;
  // Where the services keep their data: SQLite files in the directory, or a database each on
  // the test process's PostgreSQL server (test_database.h).
  server_kit::Engine engine = server_kit::Engine::kSqlite;
  // When set, where each service's data is instead (a database on a replicated pair, say).
  std::function<DatabaseLocation(const std::string& service)> database_location;
};

// Options whose only change from the defaults is the engine.
HospitalOptions OnEngine(server_kit::Engine engine);

class Hospital final {
 public:
  explicit Hospital(HospitalOptions options = {});
  ~Hospital();

  // Starts all three; REQUIREs success.
  void Start();
  // SIGTERM to all three at once, then waits.
  void Stop();

  ServiceProcess& patients_process() { return *patients_; }
  ServiceProcess& morgue_process() { return *morgue_; }
  ServiceProcess& appointments_process() { return *appointments_; }

  hospital::patients::v1::PatientsService::Stub& patients() { return *patients_stub_; }
  hospital::morgue::v1::MorgueService::Stub& morgue() { return *morgue_stub_; }
  hospital::appointments::v1::AppointmentsService::Stub& appointments() {
    return *appointments_stub_;
  }
  hospital::messaging::v1::EventInbox::Stub& morgue_inbox() { return *morgue_inbox_stub_; }
  hospital::messaging::v1::EventInbox::Stub& appointments_inbox() {
    return *appointments_inbox_stub_;
  }
  const std::string& dir() const { return dir_.path(); }
  // Where `service` ("patients", "morgue", "appointments") keeps its data.
  const DatabaseLocation& database(const std::string& service) const {
    return databases_.at(service);
  }
  // The environment `service` gets from its next start on (HospitalOptions::environment).
  void SetEnvironment(const std::string& service, std::vector<std::string> variables);
  // Replaces the patients process (after a Kill), with `extra_flags` added to its flags.
  void RestartPatients(const std::vector<std::string>& extra_flags = {});

  // Convenience calls with a 10 s deadline; REQUIRE success.
  hospital::patients::v1::Patient CreatePatient(const std::string& patient_id);
  hospital::appointments::v1::Appointment Schedule(const std::string& patient_id,
                                                   absl::Duration from_now);

  // RecordDeath of `patient_id` (died five minutes ago, of heart failure) within `timeout`; with
  // `wait_for_ready`, the call waits for a patients service that is (re)starting.
  grpc::Status RecordDeath(const std::string& patient_id,
                           hospital::patients::v1::RecordDeathResponse* response,
                           absl::Duration timeout = absl::Seconds(10), bool wait_for_ready = false);
  // The same, waiting for a (re)starting patients service; REQUIREs success.
  hospital::patients::v1::RecordDeathResponse RequireDeath(const std::string& patient_id);
  // The morgue's admission of `patient_id`, if it answers with one (waiting for a (re)starting
  // morgue, 5 s at most).
  std::optional<hospital::morgue::v1::Admission> FindAdmission(const std::string& patient_id);
  // Every admission the morgue lists, over all pages (waiting for a (re)starting morgue); -1 when
  // it does not answer within 5 s.
  int CountAdmissions();
  // The patient's SCHEDULED appointments; REQUIREs an answer.
  int CountScheduled(const std::string& patient_id);

 private:
  void Connect();

  TempDir dir_;
  std::map<std::string, DatabaseLocation> databases_;
  std::shared_ptr<grpc::ChannelCredentials> client_credentials_;
  std::vector<std::string> patients_flags_;
  std::map<std::string, std::vector<std::string>> environment_;
  std::function<std::unique_ptr<ServiceProcess>()> make_patients_;
  std::unique_ptr<ServiceProcess> patients_;
  std::unique_ptr<ServiceProcess> morgue_;
  std::unique_ptr<ServiceProcess> appointments_;
  std::unique_ptr<hospital::patients::v1::PatientsService::Stub> patients_stub_;
  std::unique_ptr<hospital::morgue::v1::MorgueService::Stub> morgue_stub_;
  std::unique_ptr<hospital::appointments::v1::AppointmentsService::Stub> appointments_stub_;
  std::unique_ptr<hospital::messaging::v1::EventInbox::Stub> morgue_inbox_stub_;
  std::unique_ptr<hospital::messaging::v1::EventInbox::Stub> appointments_inbox_stub_;
};

// A nats-server with JetStream in a temporary directory of its own, started (REQUIREs it).
struct Broker {
  explicit Broker(std::string extra_jetstream_config = "");
  TempDir directory;
  NatsServer server;
};

// A client of the FaultInjection service on an admin listener (`address`), presenting `token`
// (the fixture's admin_token in most tests).
struct FaultAdmin {
  explicit FaultAdmin(const std::string& address);
  grpc::Status Set(const hospital::faults::v1::Fault& fault, const std::string& token = "s3cret");
  grpc::Status Clear(const std::string& token = "s3cret");
  std::unique_ptr<hospital::faults::v1::FaultInjection::Stub> stub;
};

// A client context with a deadline `timeout` from now. With `wait_for_ready`, a call to a
// server that is (re)starting waits for it instead of failing at once.
std::unique_ptr<grpc::ClientContext> ContextWithTimeout(absl::Duration timeout,
                                                        bool wait_for_ready = false);

// The readiness health service of the server at `address` (plaintext); UNKNOWN when it does not
// answer within 5 s.
grpc::health::v1::HealthCheckResponse::ServingStatus Readiness(const std::string& address);

// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
bool Eventually(const std::function<bool()>& condition, absl::Duration timeout);

// The sum of the samples of metric `name` (with every label of `labels`, e.g. "outcome=\"ok\"")
// in `process`'s /metrics; REQUIREs a scrape.
double Metric(const ServiceProcess& process, const std::string& name,
              const std::vector<std::string>& labels = {});

// The database at `path` (a --db location), created with `migrations` if missing; the test fails
// (REQUIRE, with the error) if it does not open.
std::unique_ptr<server_kit::Database> OpenDatabase(const std::string& path,
                                                   const server_kit::Schema& migrations);

}  // namespace testing_support

#endif  // HOSPITAL_TEST_SUPPORT_HOSPITAL_FIXTURE_H_
