#include "support/hospital_fixture.h"

#include <fstream>

#include <grpcpp/create_channel.h>
#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "server_kit/open_database.h"
#include "server_kit/rpc_support.h"

namespace testing_support {

const char kTestPolicy[] = R"({
  "defaultTarget": {
    "methodConfig": [{"name": [{}], "timeout": "1s",
      "retryPolicy": {"maxAttempts": 2, "initialBackoff": "0.02s", "maxBackoff": "0.05s",
                      "backoffMultiplier": 2}}],
    "retryBudget": {"ratio": 0.2, "minRetriesPerSecond": 5, "maxTokens": 10},
    "circuitBreaker": {"slidingWindowSize": 20, "minimumNumberOfCalls": 10,
                       "failureRateThreshold": 50, "waitDurationInOpenState": "0.5s",
                       "permittedNumberOfCallsInHalfOpenState": 2},
    "bulkhead": {"maxConcurrentCalls": 64}
  }
})";

std::unique_ptr<grpc::ClientContext> ContextWithTimeout(absl::Duration timeout,
                                                        bool wait_for_ready) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  context->set_wait_for_ready(wait_for_ready);
  return context;
}

Broker::Broker(std::string extra_jetstream_config)
    : server(directory.path(), std::move(extra_jetstream_config)) {
  const absl::Status started = server.Start();
  INFO(started.ToString());
  REQUIRE(started.ok());
}

FaultAdmin::FaultAdmin(const std::string& address)
    : stub(hospital::faults::v1::FaultInjection::NewStub(
          grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))) {}

grpc::Status FaultAdmin::Set(const hospital::faults::v1::Fault& fault, const std::string& token) {
  auto context = ContextWithTimeout(absl::Seconds(5));
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
  hospital::faults::v1::SetFaultRequest request;
  *request.mutable_fault() = fault;
  hospital::faults::v1::Fault stored;
  return stub->SetFault(context.get(), request, &stored);
}

grpc::Status FaultAdmin::Clear(const std::string& token) {
  auto context = ContextWithTimeout(absl::Seconds(5));
  context->AddMetadata("authorization", "Bearer " + token);
  hospital::faults::v1::ClearFaultsResponse response;
  return stub->ClearFaults(context.get(), {}, &response);
}

grpc::health::v1::HealthCheckResponse::ServingStatus Readiness(const std::string& address) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("readiness");
  grpc::health::v1::HealthCheckResponse response;
  auto context = ContextWithTimeout(absl::Seconds(5));
  if (!stub->Check(context.get(), request, &response).ok()) {
    return grpc::health::v1::HealthCheckResponse::UNKNOWN;
  }
  return response.status();
}

bool Eventually(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time give_up = absl::Now() + timeout;
  while (absl::Now() < give_up) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return condition();
}

std::unique_ptr<server_kit::Database> OpenDatabase(const std::string& path,
                                                   const server_kit::Schema& migrations) {
  absl::StatusOr<std::unique_ptr<server_kit::Database>> database =
      server_kit::OpenDatabase(path, migrations);
  INFO(database.status().ToString());
  REQUIRE(database.ok());
  return *std::move(database);
}

Hospital::Hospital(HospitalOptions options) {
  for (std::vector<std::string>* flags :
       {&options.patients_flags, &options.morgue_flags, &options.appointments_flags,
        &options.every_service_flags, &options.messaging_flags}) {
    for (std::string& flag : *flags) flag = absl::StrReplaceAll(flag, {{"{dir}", dir_.path()}});
  }
  const std::string policy_path = dir_.path() + "/policy.json";
  std::ofstream(policy_path) << options.policy_json;
  std::vector<std::string> common = {
      "--shutdown_grace=5s",
      absl::StrCat("--health_check_interval=", options.health_check_interval)};
  common.insert(common.end(), options.every_service_flags.begin(),
                options.every_service_flags.end());
  if (!options.admin_token.empty()) {
    const std::string token_path = dir_.path() + "/admin-token";
    std::ofstream(token_path) << options.admin_token << "\n";
    common.push_back("--fault_admin");
    common.push_back(absl::StrCat("--admin_token_file=", token_path));
  }
  if (!options.nats_url.empty()) {
    common.push_back("--death_workflow=async");
    common.push_back(absl::StrCat("--nats_url=", options.nats_url));
    common.insert(common.end(), options.messaging_flags.begin(), options.messaging_flags.end());
  }
  environment_ = options.environment;
  for (const char* name : {"patients", "morgue", "appointments"}) {
    if (options.database_location) {
      databases_[name] = options.database_location(name);
    } else if (options.engine == server_kit::Engine::kSqlite) {
      databases_[name] = DatabaseLocation{absl::StrCat(dir_.path(), "/", name, ".db"), ""};
    } else {
      databases_[name] = NewDatabaseLocation(options.engine, dir_.path(), name);
    }
  }
  auto make = [this, common, with_metrics = options.with_metrics](const std::string& name,
                                                                  std::vector<std::string> flags) {
    const DatabaseLocation& database = databases_.at(name);
    // One replica of each, known by the same name across restarts, as a restarted pod is.
    flags.insert(flags.begin(), absl::StrCat("--replica_name=", name, "-0"));
    flags.push_back(absl::StrCat("--db=", database.db));
    if (!database.password_file.empty()) {
      flags.push_back(absl::StrCat("--db_password_file=", database.password_file));
    }
    flags.insert(flags.end(), common.begin(), common.end());
    auto process = std::make_unique<ServiceProcess>(
        BinaryPath(name), std::move(flags), absl::StrCat(dir_.path(), "/", name, ".log"),
        absl::StrCat(dir_.path(), "/", name, ".ports"), with_metrics);
    process->SetEnvironment(environment_[name]);
    return process;
  };
  morgue_ = make("morgue", options.morgue_flags);
  appointments_ = make("appointments", options.appointments_flags);
  client_credentials_ = options.client_credentials != nullptr ? options.client_credentials
                                                              : grpc::InsecureChannelCredentials();
  std::vector<std::string> patients_flags = {"--reconcile_interval=0.1s"};
  if (!options.policy_json.empty()) {
    patients_flags.push_back(absl::StrCat("--resilience_policy=", policy_path));
  }
  patients_flags.insert(patients_flags.end(), options.patients_flags.begin(),
                        options.patients_flags.end());
  // Downstream addresses are added in Start, once their ports are known.
  patients_ = nullptr;
  patients_flags_ = std::move(patients_flags);
  make_patients_ = [make, this] {
    std::vector<std::string> flags = patients_flags_;
    flags.push_back(absl::StrCat("--morgue_address=", morgue_->address()));
    flags.push_back(absl::StrCat("--appointments_address=", appointments_->address()));
    return make("patients", flags);
  };
}

Hospital::~Hospital() { Stop(); }

HospitalOptions OnEngine(server_kit::Engine engine) {
  HospitalOptions options;
  options.engine = engine;
  return options;
}

void Hospital::Start() {
  {
    const absl::Status status = morgue_->Start();
    INFO(status.ToString());
    REQUIRE(status.ok());
  }
  {
    const absl::Status status = appointments_->Start();
    INFO(status.ToString());
    REQUIRE(status.ok());
  }
  if (patients_ == nullptr) patients_ = make_patients_();
  const absl::Status status = patients_->Start();
  INFO(status.ToString());
  REQUIRE(status.ok());
  Connect();
}

void Hospital::Stop() {
  std::vector<ServiceProcess*> running;
  for (ServiceProcess* process : {patients_.get(), morgue_.get(), appointments_.get()}) {
    if (process != nullptr && process->running()) running.push_back(process);
  }
  for (ServiceProcess* process : running) process->SendTerminate();
  // A clean stop exits with 0: anything else is a crash on the way out (a sanitizer's report,
  // a use after free in a callback), which no other check would see.
  for (ServiceProcess* process : running) {
    const int code = process->WaitForExit();
    INFO(process->log());
    CHECK(code == 0);
  }
}

void Hospital::Connect() {
  auto channel = [this](const std::string& address) {
    return grpc::CreateChannel(address, client_credentials_);
  };
  patients_stub_ = hospital::patients::v1::PatientsService::NewStub(channel(patients_->address()));
  morgue_stub_ = hospital::morgue::v1::MorgueService::NewStub(channel(morgue_->address()));
  appointments_stub_ =
      hospital::appointments::v1::AppointmentsService::NewStub(channel(appointments_->address()));
  morgue_inbox_stub_ = hospital::messaging::v1::EventInbox::NewStub(channel(morgue_->address()));
  appointments_inbox_stub_ =
      hospital::messaging::v1::EventInbox::NewStub(channel(appointments_->address()));
}

void Hospital::SetEnvironment(const std::string& service, std::vector<std::string> variables) {
  environment_[service] = variables;
  for (auto [name, process] :
       {std::pair{"patients", patients_.get()}, std::pair{"morgue", morgue_.get()},
        std::pair{"appointments", appointments_.get()}}) {
    if (service == name && process != nullptr) process->SetEnvironment(variables);
  }
}

void Hospital::RestartPatients(const std::vector<std::string>& extra_flags) {
  const std::vector<std::string> flags = patients_flags_;
  patients_flags_.insert(patients_flags_.end(), extra_flags.begin(), extra_flags.end());
  patients_ = make_patients_();
  patients_flags_ = flags;
  const absl::Status status = patients_->Start();
  INFO(status.ToString());
  REQUIRE(status.ok());
  Connect();
}

hospital::patients::v1::Patient Hospital::CreatePatient(const std::string& patient_id) {
  hospital::patients::v1::CreatePatientRequest request;
  request.set_patient_id(patient_id);
  request.set_given_name("Ada");
  request.set_family_name("Lovelace");
  request.set_date_of_birth("1990-12-10");
  request.mutable_contact()->set_email("ada@example.org");
  hospital::patients::v1::Patient patient;
  auto context = ContextWithTimeout(absl::Seconds(10));
  const grpc::Status status = patients().CreatePatient(context.get(), request, &patient);
  INFO(status.error_message());
  REQUIRE(status.ok());
  return patient;
}

hospital::appointments::v1::Appointment Hospital::Schedule(const std::string& patient_id,
                                                           absl::Duration from_now) {
  hospital::appointments::v1::ScheduleAppointmentRequest request;
  request.set_patient_id(patient_id);
  *request.mutable_scheduled_time() = server_kit::ToProtoTime(absl::Now() + from_now);
  request.set_clinician("Dr. Snow");
  request.set_purpose("check-up");
  hospital::appointments::v1::Appointment appointment;
  auto context = ContextWithTimeout(absl::Seconds(10));
  const grpc::Status status =
      appointments().ScheduleAppointment(context.get(), request, &appointment);
  INFO(status.error_message());
  REQUIRE(status.ok());
  return appointment;
}

grpc::Status Hospital::RecordDeath(const std::string& patient_id,
                                   hospital::patients::v1::RecordDeathResponse* response,
                                   absl::Duration timeout, bool wait_for_ready) {
  hospital::patients::v1::RecordDeathRequest request;
  request.set_patient_id(patient_id);
  *request.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now() - absl::Minutes(5));
  request.set_cause("heart failure");
  auto context = ContextWithTimeout(timeout, wait_for_ready);
  return patients().RecordDeath(context.get(), request, response);
}

hospital::patients::v1::RecordDeathResponse Hospital::RequireDeath(const std::string& patient_id) {
  hospital::patients::v1::RecordDeathResponse response;
  const grpc::Status status =
      RecordDeath(patient_id, &response, absl::Seconds(10), /*wait_for_ready=*/true);
  INFO(status.error_message());
  REQUIRE(status.ok());
  return response;
}

std::optional<hospital::morgue::v1::Admission> Hospital::FindAdmission(
    const std::string& patient_id) {
  hospital::morgue::v1::GetAdmissionRequest request;
  request.set_patient_id(patient_id);
  hospital::morgue::v1::Admission admission;
  auto context = ContextWithTimeout(absl::Seconds(5), /*wait_for_ready=*/true);
  if (!morgue().GetAdmission(context.get(), request, &admission).ok()) return std::nullopt;
  return admission;
}

int Hospital::CountAdmissions() {
  int count = 0;
  hospital::morgue::v1::ListAdmissionsRequest request;
  request.set_page_size(500);
  do {
    hospital::morgue::v1::ListAdmissionsResponse response;
    auto context = ContextWithTimeout(absl::Seconds(5), /*wait_for_ready=*/true);
    if (!morgue().ListAdmissions(context.get(), request, &response).ok()) return -1;
    count += response.admissions_size();
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return count;
}

int Hospital::CountScheduled(const std::string& patient_id) {
  hospital::appointments::v1::ListAppointmentsRequest request;
  request.set_patient_id(patient_id);
  request.set_status(hospital::appointments::v1::SCHEDULED);
  hospital::appointments::v1::ListAppointmentsResponse response;
  auto context = ContextWithTimeout(absl::Seconds(5));
  REQUIRE(appointments().ListAppointments(context.get(), request, &response).ok());
  return response.appointments_size();
}

double Metric(const ServiceProcess& process, const std::string& name,
              const std::vector<std::string>& labels) {
  const absl::StatusOr<std::string> scrape = ScrapeMetrics(process.metrics_port());
  REQUIRE(scrape.ok());
  return SumSamples(*scrape, name, labels);
}

}  // namespace testing_support
