// Fault injection: the rules on a fake clock, and their effect on the real services.
#include "server_kit/fault_injection.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <ostream>
#include <thread>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>

#include <catch2/catch.hpp>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/sync.h"
#include "base/testing/fake_environment.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server_kit/rpc_support.h"
#include "support/hospital_fixture.h"
#include "testing_support/metrics_reader.h"

namespace {

using server_kit::FaultDecision;
using server_kit::FaultInjector;
using testing_support::ContextWithTimeout;
using testing_support::Eventually;
using testing_support::FaultAdmin;
using testing_support::Hospital;
using testing_support::ServiceProcess;
namespace faults_v1 = hospital::faults::v1;
namespace patients_v1 = hospital::patients::v1;

faults_v1::Fault Abort(const std::string& method, const std::string& code) {
  faults_v1::Fault fault;
  fault.set_method(method);
  fault.mutable_abort()->set_code(code);
  return fault;
}

TEST_CASE("rules match by method, service or everything, first match deciding", "[faults]") {
  base::testing::FakeEnvironment env;
  prometheus::Registry registry;
  FaultInjector injector(env.environment(), registry);
  REQUIRE(injector.Set(Abort("a.v1.S/Get", "NOT_FOUND")).ok());
  REQUIRE(injector.Set(Abort("a.v1.S/*", "UNAVAILABLE")).ok());
  CHECK(injector.Decide("/a.v1.S/Get").abort_status.code() == absl::StatusCode::kNotFound);
  CHECK(injector.Decide("/a.v1.S/Put").abort_status.code() == absl::StatusCode::kUnavailable);
  CHECK(injector.Decide("/b.v1.T/Get").kind == FaultDecision::Kind::kNone);
  REQUIRE(injector.Set(Abort("*", "INTERNAL")).ok());
  CHECK(injector.Decide("/b.v1.T/Get").kind == FaultDecision::Kind::kAbort);
  // Never the health, reflection or fault admin services.
  CHECK(injector.Decide("/grpc.health.v1.Health/Check").kind == FaultDecision::Kind::kNone);
  CHECK(injector.Decide("/hospital.faults.v1.FaultInjection/ClearFaults").kind ==
        FaultDecision::Kind::kNone);
  CHECK(testing_support::MetricValue(registry, "hospital_faults_injected_total",
                                     {{"kind", "abort"}}) == 3);
}

TEST_CASE("a rule affects its percentage of calls", "[faults]") {
  base::testing::FakeEnvironment env;
  prometheus::Registry registry;
  FaultInjector injector(env.environment(), registry);
  faults_v1::Fault fault = Abort("*", "UNAVAILABLE");
  fault.set_percentage(30);
  REQUIRE(injector.Set(fault).ok());
  env.random().Push(0.29);
  env.random().Push(0.30);
  CHECK(injector.Decide("/a.v1.S/Get").kind == FaultDecision::Kind::kAbort);
  CHECK(injector.Decide("/a.v1.S/Get").kind == FaultDecision::Kind::kNone);
}

TEST_CASE("delays are fixed plus jittered, and rules expire by themselves", "[faults]") {
  base::testing::FakeEnvironment env;
  prometheus::Registry registry;
  FaultInjector injector(env.environment(), registry);
  faults_v1::Fault fault;
  fault.set_method("*");
  fault.mutable_delay()->mutable_fixed()->set_nanos(100'000'000);
  fault.mutable_delay()->mutable_jitter()->set_nanos(50'000'000);
  fault.mutable_expire_after()->set_seconds(10);
  REQUIRE(injector.Set(fault).ok());
  env.random().Push(0.0);  // Percentage draw.
  env.random().Push(0.5);  // Jitter draw.
  const FaultDecision decision = injector.Decide("/a.v1.S/Get");
  CHECK(decision.kind == FaultDecision::Kind::kDelay);
  CHECK(decision.delay == absl::Milliseconds(125));
  env.Advance(absl::Seconds(10));
  CHECK(injector.Decide("/a.v1.S/Get").kind == FaultDecision::Kind::kNone);
  CHECK(injector.List().empty());
}

TEST_CASE("invalid rules are refused, naming the field", "[faults]") {
  base::testing::FakeEnvironment env;
  prometheus::Registry registry;
  FaultInjector injector(env.environment(), registry);
  auto error = [&](const faults_v1::Fault& fault) {
    absl::StatusOr<faults_v1::Fault> stored = injector.Set(fault);
    REQUIRE_FALSE(stored.ok());
    CHECK(stored.status().code() == absl::StatusCode::kInvalidArgument);
    return std::string(stored.status().message());
  };
  CHECK_THAT(error(Abort("*", "NOPE")), Catch::StartsWith("fault.abort.code"));
  CHECK_THAT(error(Abort("*", "OK")), Catch::StartsWith("fault.abort.code"));
  CHECK_THAT(error(Abort("no-slash", "UNAVAILABLE")), Catch::StartsWith("fault.method"));
  // Found by faults_fuzzer: names no method could have were stored (and logged).
  CHECK_THAT(error(Abort("a.v1.S/Get\x01\x7f", "UNAVAILABLE")), Catch::StartsWith("fault.method"));
  CHECK_THAT(error(Abort("a v1.S/*", "UNAVAILABLE")), Catch::StartsWith("fault.method"));
  faults_v1::Fault fault = Abort("*", "UNAVAILABLE");
  fault.set_percentage(120);
  CHECK_THAT(error(fault), Catch::StartsWith("fault.percentage"));
  faults_v1::Fault empty;
  empty.set_method("*");
  CHECK_THAT(error(empty), Catch::StartsWith("fault:"));
  CHECK(injector.List().empty());
}

patients_v1::CreatePatientRequest NewPatient(const std::string& id) {
  patients_v1::CreatePatientRequest request;
  request.set_patient_id(id);
  request.set_given_name("Ada");
  request.set_family_name("Lovelace");
  request.set_date_of_birth("1990-12-10");
  return request;
}

TEST_CASE("the fault admin service demands the token and changes nothing without it",
          "[faults][hospital]") {
  testing_support::HospitalOptions options;
  options.admin_token = "s3cret";
  options.with_metrics = true;
  Hospital hospital(options);
  hospital.Start();
  const faults_v1::Fault abort = Abort("hospital.patients.v1.PatientsService/*", "UNAVAILABLE");
  // Not served on the public port at all, token or not.
  FaultAdmin public_port(hospital.patients_process().address());
  CHECK(public_port.Set(abort).error_code() == grpc::StatusCode::UNIMPLEMENTED);

  FaultAdmin admin(hospital.patients_process().admin_address());
  CHECK(admin.Set(abort, "").error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(admin.Set(abort, "wrong").error_code() == grpc::StatusCode::UNAUTHENTICATED);
  {
    // Listing needs no token on the admin listener: nothing was set.
    faults_v1::ListFaultsResponse listed;
    REQUIRE(admin.stub->ListFaults(ContextWithTimeout(absl::Seconds(5)).get(), {}, &listed).ok());
    CHECK(listed.faults().empty());
  }
  hospital.CreatePatient("p-1");  // No fault was set.
  {
    const absl::StatusOr<std::string> scrape =
        testing_support::ScrapeMetrics(hospital.patients_process().metrics_port());
    REQUIRE(scrape.ok());
    CHECK(testing_support::SumSamples(*scrape, "hospital_admin_refusals_total",
                                      {"method=\"SetFault\""}) == 2);
  }

  REQUIRE(admin.Set(abort).ok());
  patients_v1::Patient patient;
  const grpc::Status aborted = hospital.patients().CreatePatient(
      ContextWithTimeout(absl::Seconds(5)).get(), NewPatient("p-2"), &patient);
  CHECK(aborted.error_code() == grpc::StatusCode::UNAVAILABLE);
  REQUIRE(admin.Clear().ok());
  // The aborted call did not act: p-2 does not exist and can be created now.
  hospital.CreatePatient("p-2");
  // Each change left an audit line (who, what, before, after); the refused ones none, and the
  // token is never written.
  hospital.Stop();
  const std::string log = hospital.patients_process().log();
  std::vector<std::string> audit_lines;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (absl::StrContains(line, "\"event\":\"admin_change\"")) audit_lines.emplace_back(line);
  }
  REQUIRE(audit_lines.size() == 2);
  CHECK_THAT(audit_lines[0],
             Catch::Contains("\"method\":\"SetFault\"") && Catch::Contains("\"before\":\"none\"") &&
                 Catch::Contains("UNAVAILABLE") && Catch::Contains("\"peer\":\"ipv4:127.0.0.1"));
  CHECK_THAT(audit_lines[1], Catch::Contains("\"method\":\"ClearFaults\"") &&
                                 Catch::Contains("\"before\":\"1 rules\"") &&
                                 Catch::Contains("0 rules (all cleared)"));
  CHECK(log.find("s3cret") == std::string::npos);
}

// Sends `json` as a request of `method` (a method descriptor of a generated service) and returns
// the status, using gRPC's generic stub so that one loop can call every method.
grpc::Status CallGeneric(grpc::GenericStub& stub, const google::protobuf::MethodDescriptor& method,
                         const std::string& json) {
  std::unique_ptr<google::protobuf::Message> request(
      google::protobuf::MessageFactory::generated_factory()
          ->GetPrototype(method.input_type())
          ->New());
  const auto parsed = google::protobuf::util::JsonStringToMessage(json, request.get());
  INFO(method.full_name() << ": " << parsed.ToString());
  REQUIRE(parsed.ok());
  grpc::Slice slice(request->SerializeAsString());
  grpc::ByteBuffer sent(&slice, 1);
  grpc::ByteBuffer received;
  grpc::Status result;
  base::Notification done;
  auto context = ContextWithTimeout(absl::Seconds(5));
  stub.UnaryCall(context.get(),
                 absl::StrCat("/", method.service()->full_name(), "/", method.name()),
                 grpc::StubOptions(), &sent, &received, [&](grpc::Status status) {
                   result = std::move(status);
                   done.Notify();
                 });
  done.WaitForNotification();
  return result;
}

TEST_CASE("an aborted call never reaches the method, for every method of every service",
          "[faults][hospital]") {
  testing_support::HospitalOptions options;
  options.admin_token = "s3cret";
  Hospital hospital(options);
  hospital.Start();
  hospital.CreatePatient("p-1");
  const std::string appointment_id = hospital.Schedule("p-1", absl::Hours(24)).appointment_id();
  const std::string past = "\"2020-01-01T00:00:00Z\"";
  const std::string future = "\"2099-01-01T00:00:00Z\"";
  // A request each method would act on if it ran: valid, and naming things that exist.
  const std::map<std::string, std::string> requests = {
      {"hospital.patients.v1.PatientsService.CreatePatient",
       R"({"patientId": "p-new", "givenName": "Ada", "familyName": "Byron",
           "dateOfBirth": "1990-12-10"})"},
      {"hospital.patients.v1.PatientsService.GetPatient", R"({"patientId": "p-1"})"},
      {"hospital.patients.v1.PatientsService.ListPatients", "{}"},
      {"hospital.patients.v1.PatientsService.UpdateContactDetails",
       R"({"patientId": "p-1", "contact": {"email": "changed@example.org"}})"},
      {"hospital.patients.v1.PatientsService.RecordDeath",
       R"({"patientId": "p-1", "cause": "stroke", "timeOfDeath": )" + past + "}"},
      {"hospital.morgue.v1.MorgueService.AdmitDeceased",
       R"({"patientId": "p-9", "workflowId": "w-9", "cause": "stroke", "timeOfDeath": )" + past +
           "}"},
      {"hospital.morgue.v1.MorgueService.GetAdmission", R"({"patientId": "p-9"})"},
      {"hospital.morgue.v1.MorgueService.ListAdmissions", "{}"},
      {"hospital.morgue.v1.MorgueService.ReleaseBody",
       R"({"admissionId": "adm-1", "funeralHome": "Hill & Sons"})"},
      {"hospital.morgue.v1.MorgueService.CancelAdmission",
       R"({"patientId": "p-9", "workflowId": "w-9"})"},
      {"hospital.morgue.v1.MorgueService.ConfirmAdmission",
       R"({"patientId": "p-9", "workflowId": "w-9"})"},
      {"hospital.appointments.v1.AppointmentsService.ScheduleAppointment",
       R"({"appointmentId": "a-new", "patientId": "p-1", "clinician": "Dr. Snow",
           "scheduledTime": )" +
           future + "}"},
      {"hospital.appointments.v1.AppointmentsService.GetAppointment",
       R"({"appointmentId": ")" + appointment_id + R"("})"},
      {"hospital.appointments.v1.AppointmentsService.ListAppointments", R"({"patientId": "p-1"})"},
      {"hospital.appointments.v1.AppointmentsService.CancelAppointment",
       R"({"appointmentId": ")" + appointment_id + R"(", "reason": "moved"})"},
      {"hospital.appointments.v1.AppointmentsService.CancelPatientAppointments",
       R"({"patientId": "p-1", "workflowId": "w-1", "reason": "deceased"})"},
      {"hospital.appointments.v1.AppointmentsService.RestorePatientAppointments",
       R"({"patientId": "p-1", "workflowId": "w-1"})"},
      {"hospital.messaging.v1.EventInbox.ListRejectedEvents", "{}"},
  };
  const std::vector<std::pair<std::string, ServiceProcess*>> services = {
      {"hospital.patients.v1.PatientsService", &hospital.patients_process()},
      {"hospital.morgue.v1.MorgueService", &hospital.morgue_process()},
      {"hospital.appointments.v1.AppointmentsService", &hospital.appointments_process()},
      // Served by morgue and appointments alike; read-only.
      {"hospital.messaging.v1.EventInbox", &hospital.morgue_process()},
  };
  int methods_called = 0;
  for (const auto& [service_name, process] : services) {
    const google::protobuf::ServiceDescriptor* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service_name);
    REQUIRE(service != nullptr);
    FaultAdmin admin(process->admin_address());
    REQUIRE(admin.Set(Abort("*", "DATA_LOSS")).ok());
    grpc::GenericStub stub(
        grpc::CreateChannel(process->address(), grpc::InsecureChannelCredentials()));
    for (int i = 0; i < service->method_count(); ++i) {
      const google::protobuf::MethodDescriptor& method = *service->method(i);
      const auto request = requests.find(method.full_name());
      INFO("no request in this test for " << method.full_name() << ": add one");
      REQUIRE(request != requests.end());
      const grpc::Status status = CallGeneric(stub, method, request->second);
      INFO(method.full_name() << ": " << status.error_message());
      CHECK(status.error_code() == grpc::StatusCode::DATA_LOSS);
      ++methods_called;
    }
    REQUIRE(admin.Clear().ok());
  }
  CHECK(methods_called == static_cast<int>(requests.size()));

  // Nothing any of them would have done was done.
  patients_v1::Patient patient;
  patients_v1::GetPatientRequest get_patient;
  get_patient.set_patient_id("p-new");
  CHECK(hospital.patients()
            .GetPatient(ContextWithTimeout(absl::Seconds(5)).get(), get_patient, &patient)
            .error_code() == grpc::StatusCode::NOT_FOUND);
  get_patient.set_patient_id("p-1");
  REQUIRE(hospital.patients()
              .GetPatient(ContextWithTimeout(absl::Seconds(5)).get(), get_patient, &patient)
              .ok());
  CHECK(patient.status() == patients_v1::ALIVE);
  CHECK(patient.contact().email() == "ada@example.org");  // As CreatePatient set it.
  hospital::morgue::v1::GetAdmissionRequest get_admission;
  get_admission.set_patient_id("p-9");
  hospital::morgue::v1::Admission admission;
  CHECK(hospital.morgue()
            .GetAdmission(ContextWithTimeout(absl::Seconds(5)).get(), get_admission, &admission)
            .error_code() == grpc::StatusCode::NOT_FOUND);
  hospital::appointments::v1::ListAppointmentsRequest list;
  list.set_patient_id("p-1");
  hospital::appointments::v1::ListAppointmentsResponse listed;
  REQUIRE(hospital.appointments()
              .ListAppointments(ContextWithTimeout(absl::Seconds(5)).get(), list, &listed)
              .ok());
  REQUIRE(listed.appointments_size() == 1);
  CHECK(listed.appointments(0).appointment_id() == appointment_id);
  CHECK(listed.appointments(0).status() == hospital::appointments::v1::SCHEDULED);
}

TEST_CASE("a fault in the morgue is compensated by the death workflow", "[faults][hospital]") {
  testing_support::HospitalOptions options;
  options.admin_token = "s3cret";
  options.with_metrics = true;
  Hospital hospital(options);
  hospital.Start();
  hospital.CreatePatient("p-1");
  hospital.Schedule("p-1", absl::Hours(24));
  FaultAdmin morgue_admin(hospital.morgue_process().admin_address());
  REQUIRE(morgue_admin.Set(Abort("hospital.morgue.v1.MorgueService/AdmitDeceased", "UNAVAILABLE"))
              .ok());
  patients_v1::RecordDeathRequest request;
  request.set_patient_id("p-1");
  request.set_cause("stroke");
  *request.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now() - absl::Hours(1));
  patients_v1::RecordDeathResponse response;
  const grpc::Status status = hospital.patients().RecordDeath(
      ContextWithTimeout(absl::Seconds(10)).get(), request, &response);
  CHECK(status.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK_THAT(status.error_message(), Catch::Contains("morgue (UNAVAILABLE: fault injected)"));

  REQUIRE(morgue_admin.Clear().ok());
  CHECK(Eventually(
      [&] {
        return hospital.patients()
            .RecordDeath(ContextWithTimeout(absl::Seconds(10)).get(), request, &response)
            .ok();
      },
      absl::Seconds(10)));
}

TEST_CASE("delay, hang and not_serving faults", "[faults][hospital]") {
  testing_support::HospitalOptions options;
  options.admin_token = "s3cret";
  options.health_check_interval = "0.05s";
  Hospital hospital(options);
  hospital.Start();
  FaultAdmin admin(hospital.appointments_process().admin_address());
  hospital::appointments::v1::ListAppointmentsRequest list;
  list.set_patient_id("p-1");
  hospital::appointments::v1::ListAppointmentsResponse listed;

  faults_v1::Fault delay;
  delay.set_method("hospital.appointments.v1.AppointmentsService/ListAppointments");
  delay.mutable_delay()->mutable_fixed()->set_nanos(300'000'000);
  REQUIRE(admin.Set(delay).ok());
  absl::Time start = absl::Now();
  CHECK(hospital.appointments()
            .ListAppointments(ContextWithTimeout(absl::Seconds(5)).get(), list, &listed)
            .ok());
  CHECK(absl::Now() - start >= absl::Milliseconds(300));

  faults_v1::Fault hang;
  hang.set_id(delay.id());
  hang.set_method(delay.method());
  hang.mutable_hang();
  REQUIRE(admin.Clear().ok());
  REQUIRE(admin.Set(hang).ok());
  start = absl::Now();
  CHECK(hospital.appointments()
            .ListAppointments(ContextWithTimeout(absl::Milliseconds(400)).get(), list, &listed)
            .error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
  // gRPC's timer may fire a millisecond or two early (whole-millisecond deadlines, cached now).
  CHECK(absl::Now() - start >= absl::Milliseconds(397));

  REQUIRE(admin.Clear().ok());
  faults_v1::Fault down;
  down.mutable_not_serving();
  down.mutable_expire_after()->set_seconds(1);
  REQUIRE(admin.Set(down).ok());
  auto health = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
      hospital.appointments_process().address(), grpc::InsecureChannelCredentials()));
  auto readiness = [&] {
    grpc::health::v1::HealthCheckRequest request;
    request.set_service("readiness");
    grpc::health::v1::HealthCheckResponse response;
    health->Check(ContextWithTimeout(absl::Seconds(5)).get(), request, &response);
    return response.status();
  };
  CHECK(
      Eventually([&] { return readiness() == grpc::health::v1::HealthCheckResponse::NOT_SERVING; },
                 absl::Seconds(5)));
  // The rule expires after a second and readiness comes back by itself.
  CHECK(Eventually([&] { return readiness() == grpc::health::v1::HealthCheckResponse::SERVING; },
                   absl::Seconds(5)));
}

TEST_CASE("a stalled service stays within --max_threads", "[faults][hospital]") {
  // Without a bound the synchronous server starts a thread for every call that waits, and its
  // memory grows with them. With one, calls wait in gRPC's queue (and fail when their deadline
  // passes) or are refused with RESOURCE_EXHAUSTED when no thread is left to poll.
  testing_support::HospitalOptions options;
  options.admin_token = "s3cret";
  options.patients_flags = {"--max_threads=8"};
  Hospital hospital(options);
  hospital.Start();
  hospital.CreatePatient("p-1");
  const auto threads = [&] {
    return std::distance(std::filesystem::directory_iterator(
                             absl::StrCat("/proc/", hospital.patients_process().pid(), "/task")),
                         std::filesystem::directory_iterator());
  };
  const auto idle_threads = threads();
  FaultAdmin admin(hospital.patients_process().admin_address());
  faults_v1::Fault hang;
  hang.set_method("hospital.patients.v1.PatientsService/GetPatient");
  hang.mutable_hang();
  REQUIRE(admin.Set(hang).ok());

  // 32 calls that would each hold a serving thread for 1.5 s.
  struct Call {
    grpc::ClientContext context;
    patients_v1::GetPatientRequest request;
    patients_v1::Patient response;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Call>> calls;
  base::Mutex mutex;
  base::CondVar finished_changed;
  int finished = 0;
  for (int i = 0; i < 32; ++i) {
    auto& call = *calls.emplace_back(std::make_unique<Call>());
    call.context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Milliseconds(1500)));
    call.request.set_patient_id("p-1");
    hospital.patients().async()->GetPatient(&call.context, &call.request, &call.response,
                                            [&, c = &call](grpc::Status status) {
                                              base::MutexLock lock(&mutex);
                                              c->status = std::move(status);
                                              ++finished;
                                              finished_changed.SignalAll();
                                            });
  }
  // Sampled every 20 ms until every call has ended: the most threads the service had during
  // the stall.
  auto stalled_threads = threads();
  {
    base::MutexLock lock(&mutex);
    while (finished < 32) {
      stalled_threads = std::max(stalled_threads, threads());
      finished_changed.WaitWithDeadline(&mutex, absl::Now() + absl::Milliseconds(20));
    }
  }
  for (const auto& call : calls) {
    CHECK((call->status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
           call->status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED));
  }
  CHECK(stalled_threads <= idle_threads + 8);
  // The admin listener has threads of its own, so an operator is heard at once; the public port
  // answers again once its hung calls have let go of their threads.
  CHECK(admin.Clear().ok());
  patients_v1::GetPatientRequest get;
  get.set_patient_id("p-1");
  patients_v1::Patient patient;
  CHECK(Eventually(
      [&] {
        return hospital.patients()
            .GetPatient(ContextWithTimeout(absl::Seconds(1)).get(), get, &patient)
            .ok();
      },
      absl::Seconds(5)));
}

}  // namespace

// --- The patients service killed at each step of a synchronous death ---------------------------

faults_v1::Fault Hang(const std::string& method) {
  faults_v1::Fault fault;
  fault.set_method(method);
  fault.mutable_hang();
  return fault;
}

// Long enough that a hung call is still waiting when the test kills the caller.
constexpr char kPatientPolicy[] = R"({
  "defaultTarget": {"methodConfig": [{"name": [{}], "timeout": "30s"}]}
})";

// What the three services hold about one patient.
struct EndState {
  patients_v1::PatientStatus patient = patients_v1::PATIENT_STATUS_UNSPECIFIED;
  // Empty when there is no admission.
  std::string admission_status;
  bool provisional = false;
  int cancelled_appointments = 0;
  bool operator==(const EndState& other) const {
    return patient == other.patient && admission_status == other.admission_status &&
           provisional == other.provisional &&
           cancelled_appointments == other.cancelled_appointments;
  }
};

std::ostream& operator<<(std::ostream& out, const EndState& state) {
  return out << patients_v1::PatientStatus_Name(state.patient) << ", admission "
             << (state.admission_status.empty() ? "none" : state.admission_status)
             << (state.provisional ? " (provisional)" : "") << ", " << state.cancelled_appointments
             << " cancelled appointments";
}

EndState StateOf(Hospital& hospital, const std::string& patient_id) {
  EndState state;
  patients_v1::GetPatientRequest get;
  get.set_patient_id(patient_id);
  patients_v1::Patient patient;
  if (hospital.patients()
          .GetPatient(ContextWithTimeout(absl::Seconds(5)).get(), get, &patient)
          .ok()) {
    state.patient = patient.status();
  }
  hospital::morgue::v1::GetAdmissionRequest get_admission;
  get_admission.set_patient_id(patient_id);
  hospital::morgue::v1::Admission admission;
  if (hospital.morgue()
          .GetAdmission(ContextWithTimeout(absl::Seconds(5)).get(), get_admission, &admission)
          .ok()) {
    state.admission_status = hospital::morgue::v1::AdmissionStatus_Name(admission.status());
    state.provisional = admission.provisional();
  }
  hospital::appointments::v1::ListAppointmentsRequest list;
  list.set_patient_id(patient_id);
  hospital::appointments::v1::ListAppointmentsResponse listed;
  if (hospital.appointments()
          .ListAppointments(ContextWithTimeout(absl::Seconds(5)).get(), list, &listed)
          .ok()) {
    for (const auto& appointment : listed.appointments()) {
      if (appointment.status() == hospital::appointments::v1::CANCELLED) {
        ++state.cancelled_appointments;
      }
    }
  }
  return state;
}

TEST_CASE("the patients service killed at each step of a death: the end state after restart",
          "[faults][hospital][crash]") {
  // Each row holds the workflow at one step with hung (or failing) downstream calls, kills the
  // patients service there (kill -9), clears the faults, restarts it on the same database, and
  // waits for the background pass to settle the death.
  struct Row {
    std::string step;
    std::vector<std::pair<std::string, faults_v1::Fault>> faults;  // Service address, rule.
    // True when the kill comes once the step is reached.
    std::function<bool(Hospital&)> reached;
    EndState settled;
  };
  const std::string morgue = "hospital.morgue.v1.MorgueService/";
  const std::string appointments = "hospital.appointments.v1.AppointmentsService/";
  const auto deceased = [](Hospital& h) {
    return StateOf(h, "p-1").patient == patients_v1::DECEASED;
  };
  const auto admitted = [](Hospital& h) { return !StateOf(h, "p-1").admission_status.empty(); };
  const auto hangs_seen = [](Hospital& h) {
    const absl::StatusOr<std::string> scrape =
        testing_support::ScrapeMetrics(h.morgue_process().metrics_port());
    return scrape.ok() && testing_support::SumSamples(*scrape, "hospital_faults_injected_total",
                                                      {"kind=\"hang\""}) >= 1;
  };
  const EndState recorded{patients_v1::DECEASED, "ADMITTED", false, 1};
  const EndState undone{patients_v1::ALIVE, "CANCELLED", false, 0};
  const std::vector<Row> rows = {
      {"after the local commit, both calls hung",
       {{"morgue", Hang(morgue + "AdmitDeceased")},
        {"appointments", Hang(appointments + "CancelPatientAppointments")}},
       deceased,
       recorded},
      {"between the calls: admitted, appointments hung",
       {{"appointments", Hang(appointments + "CancelPatientAppointments")}},
       [&](Hospital& h) { return deceased(h) && admitted(h); },
       recorded},
      {"during compensation: appointments failed, the undo of the admission hung",
       {{"appointments", Abort(appointments + "CancelPatientAppointments", "INVALID_ARGUMENT")},
        {"morgue", Hang(morgue + "CancelAdmission")}},
       [&](Hospital& h) { return admitted(h) && StateOf(h, "p-1").patient == patients_v1::ALIVE; },
       undone},
      {"completed, the confirmation of the admission hung",
       {{"morgue", Hang(morgue + "ConfirmAdmission")}},
       hangs_seen,
       recorded},
  };
  for (const Row& row : rows) {
    INFO("killed " << row.step);
    testing_support::HospitalOptions options;
    options.admin_token = "s3cret";
    options.with_metrics = true;
    options.policy_json = kPatientPolicy;
    Hospital hospital(options);
    hospital.Start();
    hospital.CreatePatient("p-1");
    hospital.Schedule("p-1", absl::Hours(24));
    FaultAdmin morgue_admin(hospital.morgue_process().admin_address());
    FaultAdmin appointments_admin(hospital.appointments_process().admin_address());
    for (const auto& [service, fault] : row.faults) {
      REQUIRE((service == "morgue" ? morgue_admin : appointments_admin).Set(fault).ok());
    }
    std::thread caller([&] {
      patients_v1::RecordDeathRequest request;
      request.set_patient_id("p-1");
      request.set_cause("stroke");
      *request.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now() - absl::Hours(1));
      patients_v1::RecordDeathResponse response;
      // Ends when the service is killed; its outcome is what the restart settles.
      (void)hospital.patients().RecordDeath(ContextWithTimeout(absl::Seconds(30)).get(), request,
                                            &response);
    });
    const bool reached = Eventually([&] { return row.reached(hospital); }, absl::Seconds(10));
    hospital.patients_process().Kill();
    caller.join();
    REQUIRE(reached);
    REQUIRE(morgue_admin.Clear().ok());
    REQUIRE(appointments_admin.Clear().ok());
    hospital.RestartPatients();
    EndState state;
    CHECK(Eventually(
        [&] {
          state = StateOf(hospital, "p-1");
          return state == row.settled;
        },
        absl::Seconds(15)));
    INFO("settled as " << state);
    CHECK(state == row.settled);
  }
}

TEST_CASE("SIGTERM ends a hung call at once instead of draining until its deadline",
          "[faults][hospital][shutdown]") {
  testing_support::HospitalOptions options;
  options.admin_token = "s3cret";
  options.with_metrics = true;
  Hospital hospital(options);
  hospital.Start();
  FaultAdmin admin(hospital.appointments_process().admin_address());
  REQUIRE(admin.Set(Hang("hospital.appointments.v1.AppointmentsService/ListAppointments")).ok());
  grpc::Status hung;
  std::thread caller([&] {
    hospital::appointments::v1::ListAppointmentsRequest list;
    list.set_patient_id("p-1");
    hospital::appointments::v1::ListAppointmentsResponse listed;
    hung = hospital.appointments().ListAppointments(ContextWithTimeout(absl::Seconds(60)).get(),
                                                    list, &listed);
  });
  REQUIRE(Eventually(
      [&] {
        const absl::StatusOr<std::string> scrape =
            testing_support::ScrapeMetrics(hospital.appointments_process().metrics_port());
        return scrape.ok() && testing_support::SumSamples(*scrape, "hospital_faults_injected_total",
                                                          {"kind=\"hang\""}) >= 1;
      },
      absl::Seconds(10)));
  const absl::Time start = absl::Now();
  CHECK(hospital.appointments_process().Terminate() == 0);
  // Well within the 10 s grace period, let alone the call's 60 s deadline.
  CHECK(absl::Now() - start < absl::Seconds(5));
  caller.join();
  CHECK(hung.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
}
