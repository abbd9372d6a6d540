// The three real services as processes on loopback: the death workflow end to end, its failure
// modes, restarts and shutdown.
#include <atomic>
#include <thread>
#include <vector>

#include <grpcpp/create_channel.h>
#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "resilience/v1/admin.grpc.pb.h"
#include "server_kit/rpc_support.h"
#include "server_kit/serve.h"
#include "support/hospital_fixture.h"

namespace {

using testing_support::ContextWithTimeout;
using testing_support::Eventually;
using testing_support::Hospital;
using testing_support::PostgresEngine;
using testing_support::SqliteEngine;
namespace patients_v1 = hospital::patients::v1;
namespace morgue_v1 = hospital::morgue::v1;
namespace appointments_v1 = hospital::appointments::v1;

patients_v1::Patient GetPatient(Hospital& hospital, const std::string& patient_id) {
  patients_v1::GetPatientRequest request;
  request.set_patient_id(patient_id);
  patients_v1::Patient patient;
  auto context = ContextWithTimeout(absl::Seconds(10), /*wait_for_ready=*/true);
  const grpc::Status status = hospital.patients().GetPatient(context.get(), request, &patient);
  INFO(status.error_message());
  REQUIRE(status.ok());
  return patient;
}

std::vector<appointments_v1::Appointment> Appointments(Hospital& hospital,
                                                       const std::string& patient_id) {
  appointments_v1::ListAppointmentsRequest request;
  request.set_patient_id(patient_id);
  appointments_v1::ListAppointmentsResponse response;
  auto context = ContextWithTimeout(absl::Seconds(10));
  const grpc::Status status =
      hospital.appointments().ListAppointments(context.get(), request, &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  return {response.appointments().begin(), response.appointments().end()};
}

int CountWithStatus(const std::vector<appointments_v1::Appointment>& appointments,
                    appointments_v1::AppointmentStatus status) {
  int count = 0;
  for (const auto& appointment : appointments) count += appointment.status() == status ? 1 : 0;
  return count;
}

// The patient's admission, or NOT_FOUND.
grpc::Status Admission(Hospital& hospital, const std::string& patient_id,
                       morgue_v1::Admission* admission) {
  morgue_v1::GetAdmissionRequest request;
  request.set_patient_id(patient_id);
  auto context = ContextWithTimeout(absl::Seconds(10));
  return hospital.morgue().GetAdmission(context.get(), request, admission);
}

// True when nothing of a failed death remains: no standing admission, nothing cancelled.
bool FullyUndone(Hospital& hospital, const std::string& patient_id) {
  morgue_v1::Admission admission;
  const grpc::Status status = Admission(hospital, patient_id, &admission);
  const bool morgue_clean = status.error_code() == grpc::StatusCode::NOT_FOUND ||
                            (status.ok() && admission.status() == morgue_v1::CANCELLED);
  return morgue_clean &&
         CountWithStatus(Appointments(hospital, patient_id), appointments_v1::CANCELLED) == 0;
}

TEMPLATE_TEST_CASE("a death reaches the morgue and the appointments service", "[hospital]",
                   SqliteEngine, PostgresEngine) {
  Hospital hospital(testing_support::OnEngine(TestType::kEngine));
  hospital.Start();
  hospital.CreatePatient("p-1");
  for (int i = 1; i <= 3; ++i) hospital.Schedule("p-1", absl::Hours(24 * i));

  patients_v1::RecordDeathResponse response;
  const grpc::Status status = hospital.RecordDeath("p-1", &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  CHECK(response.patient().status() == patients_v1::DECEASED);
  CHECK(response.patient().death().cause() == "heart failure");
  CHECK_FALSE(response.morgue().admission_id().empty());
  CHECK(response.cancelled_appointments_size() == 3);
  CHECK_FALSE(response.replayed());

  CHECK(GetPatient(hospital, "p-1").status() == patients_v1::DECEASED);
  morgue_v1::Admission admission;
  REQUIRE(Admission(hospital, "p-1", &admission).ok());
  CHECK(admission.status() == morgue_v1::ADMITTED);
  CHECK(admission.admission_id() == response.morgue().admission_id());
  CHECK(CountWithStatus(Appointments(hospital, "p-1"), appointments_v1::CANCELLED) == 3);

  // The deceased cannot book.
  appointments_v1::ScheduleAppointmentRequest book;
  book.set_patient_id("p-1");
  *book.mutable_scheduled_time() = server_kit::ToProtoTime(absl::Now() + absl::Hours(48));
  book.set_clinician("Dr. Snow");
  appointments_v1::Appointment booked;
  auto context = ContextWithTimeout(absl::Seconds(10));
  const grpc::Status refused =
      hospital.appointments().ScheduleAppointment(context.get(), book, &booked);
  CHECK(refused.error_code() == grpc::StatusCode::FAILED_PRECONDITION);

  SECTION("a repeated RecordDeath returns the original result") {
    patients_v1::RecordDeathResponse again;
    REQUIRE(hospital.RecordDeath("p-1", &again).ok());
    CHECK(again.replayed());
    CHECK(again.workflow_id() == response.workflow_id());
    CHECK(again.morgue().admission_id() == response.morgue().admission_id());
    CHECK(again.cancelled_appointments_size() == 3);
  }
}

TEMPLATE_TEST_CASE("with the morgue down the death is compensated and the caller told",
                   "[hospital]", SqliteEngine, PostgresEngine) {
  Hospital hospital(testing_support::OnEngine(TestType::kEngine));
  hospital.Start();
  hospital.CreatePatient("p-2");
  hospital.Schedule("p-2", absl::Hours(24));
  hospital.Schedule("p-2", absl::Hours(48));
  REQUIRE(hospital.morgue_process().Terminate() == 0);

  patients_v1::RecordDeathResponse response;
  const grpc::Status status = hospital.RecordDeath("p-2", &response);
  CHECK(status.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK_THAT(status.error_message(), Catch::Contains("morgue"));
  CHECK(GetPatient(hospital, "p-2").status() == patients_v1::ALIVE);
  // The appointments service was reached and its cancellation undone within the call.
  CHECK(CountWithStatus(Appointments(hospital, "p-2"), appointments_v1::SCHEDULED) == 2);
  hospital.Schedule("p-2", absl::Hours(72));  // The patient may book again.

  // Once the morgue is back, the death can be recorded.
  REQUIRE(hospital.morgue_process().Start().ok());
  CHECK(Eventually(
      [&] {
        patients_v1::RecordDeathResponse retry;
        return hospital.RecordDeath("p-2", &retry).ok();
      },
      absl::Seconds(15)));
  morgue_v1::Admission admission;
  REQUIRE(Admission(hospital, "p-2", &admission).ok());
  CHECK(admission.status() == morgue_v1::ADMITTED);
  CHECK(CountWithStatus(Appointments(hospital, "p-2"), appointments_v1::CANCELLED) == 3);
}

TEMPLATE_TEST_CASE("a death refused by an open breaker says so in a trailer, not only in words",
                   "[hospital]", SqliteEngine, PostgresEngine) {
  testing_support::HospitalOptions options = testing_support::OnEngine(TestType::kEngine);
  options.admin_token = "s3cret";
  Hospital hospital(options);
  hospital.Start();
  hospital.CreatePatient("p-3");
  resilience::v1::CircuitBreakerRequest open;
  open.set_target("morgue");
  resilience::v1::CircuitBreakerStatus breaker;
  {
    // Not on the public port; on the admin listener, not without the token.
    auto public_port = resilience::v1::ResilienceAdmin::NewStub(grpc::CreateChannel(
        hospital.patients_process().address(), grpc::InsecureChannelCredentials()));
    CHECK(public_port
              ->ForceOpenCircuitBreaker(ContextWithTimeout(absl::Seconds(5)).get(), open, &breaker)
              .error_code() == grpc::StatusCode::UNIMPLEMENTED);
  }
  auto admin = resilience::v1::ResilienceAdmin::NewStub(grpc::CreateChannel(
      hospital.patients_process().admin_address(), grpc::InsecureChannelCredentials()));
  {
    auto context = ContextWithTimeout(absl::Seconds(5));
    context->AddMetadata("authorization", "Bearer wrong");
    const grpc::Status refused = admin->ForceOpenCircuitBreaker(context.get(), open, &breaker);
    CHECK(refused.error_code() == grpc::StatusCode::UNAUTHENTICATED);
    CHECK_THAT(refused.error_message(), Catch::Contains("wrong token"));
  }
  {
    resilience::v1::ListCircuitBreakersResponse list;
    REQUIRE(admin->ListCircuitBreakers(ContextWithTimeout(absl::Seconds(5)).get(), {}, &list).ok());
    for (const auto& listed : list.circuit_breakers()) {
      CHECK(listed.state() == resilience::v1::CircuitBreakerStatus::CLOSED);
    }
  }
  {
    auto context = ContextWithTimeout(absl::Seconds(5));
    context->AddMetadata("authorization", "Bearer s3cret");
    REQUIRE(admin->ForceOpenCircuitBreaker(context.get(), open, &breaker).ok());
  }
  patients_v1::RecordDeathRequest request;
  request.set_patient_id("p-3");
  request.set_cause("stroke");
  *request.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now() - absl::Hours(1));
  patients_v1::RecordDeathResponse response;
  auto context = ContextWithTimeout(absl::Seconds(5));
  const grpc::Status status = hospital.patients().RecordDeath(context.get(), request, &response);
  CHECK(status.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(server_kit::ErrorReasonOf(*context) == server_kit::kReasonCircuitOpen);
  CHECK(GetPatient(hospital, "p-3").status() == patients_v1::ALIVE);
  // The operator's change left its audit line: what, before, after, and who.
  hospital.Stop();
  const std::string log = hospital.patients_process().log();
  CHECK_THAT(log, Catch::Contains("\"event\":\"admin_change\"") &&
                      Catch::Contains("\"method\":\"ForceOpenCircuitBreaker\",\"target\":"
                                      "\"morgue\",\"before\":\"CLOSED\",\"after\":"
                                      "\"FORCED_OPEN\",\"peer\":\"ipv4:127.0.0.1") &&
                      Catch::Contains("\"identity\":\"bearer token\""));
  CHECK(log.find("s3cret") == std::string::npos);
}

TEMPLATE_TEST_CASE("appointments too slow for the deadline: compensated once it answers again",
                   "[hospital]", SqliteEngine, PostgresEngine) {
  Hospital hospital(testing_support::OnEngine(TestType::kEngine));
  hospital.Start();
  hospital.CreatePatient("p-3");
  hospital.Schedule("p-3", absl::Hours(24));
  hospital.appointments_process().Freeze();

  patients_v1::RecordDeathResponse response;
  const absl::Time start = absl::Now();
  const grpc::Status status = hospital.RecordDeath("p-3", &response, absl::Seconds(20));
  const absl::Duration elapsed = absl::Now() - start;
  CHECK(status.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK_THAT(status.error_message(), Catch::Contains("appointments"));
  CHECK(elapsed < absl::Seconds(10));  // Bounded by the policy's 1 s timeout, not the caller's.
  CHECK(GetPatient(hospital, "p-3").status() == patients_v1::ALIVE);

  hospital.appointments_process().Unfreeze();
  // The late cancellation, if it lands, and the owed undo calls converge on "nothing happened".
  CHECK(Eventually([&] { return FullyUndone(hospital, "p-3"); }, absl::Seconds(20)));
}

grpc::Status ReleaseBody(Hospital& hospital, const std::string& admission_id,
                         std::string* reason = nullptr) {
  morgue_v1::ReleaseBodyRequest request;
  request.set_admission_id(admission_id);
  request.set_funeral_home("Hill & Sons");
  morgue_v1::Admission released;
  auto context = ContextWithTimeout(absl::Seconds(10));
  const grpc::Status status = hospital.morgue().ReleaseBody(context.get(), request, &released);
  if (reason != nullptr) *reason = server_kit::ErrorReasonOf(*context);
  return status;
}

TEMPLATE_TEST_CASE("a body cannot be released while its death may still be undone", "[hospital]",
                   SqliteEngine, PostgresEngine) {
  Hospital hospital(testing_support::OnEngine(TestType::kEngine));
  hospital.Start();
  hospital.CreatePatient("p-5");
  hospital.Schedule("p-5", absl::Hours(24));
  // Appointments hangs, so the death stays pending with the morgue's admission made.
  hospital.appointments_process().Freeze();
  grpc::Status death;
  std::thread recording([&] {
    patients_v1::RecordDeathResponse response;
    death = hospital.RecordDeath("p-5", &response, absl::Seconds(20));
  });
  morgue_v1::Admission admission;
  REQUIRE(
      Eventually([&] { return Admission(hospital, "p-5", &admission).ok(); }, absl::Seconds(10)));
  CHECK(admission.provisional());
  std::string reason;
  const grpc::Status early = ReleaseBody(hospital, admission.admission_id(), &reason);
  CHECK(early.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  CHECK(reason == "ADMISSION_PROVISIONAL");
  recording.join();
  CHECK(death.error_code() == grpc::StatusCode::UNAVAILABLE);  // Appointments timed out.
  hospital.appointments_process().Unfreeze();
  // The undo met an admission nobody had released: the patient is alive, nothing is left.
  CHECK(Eventually([&] { return FullyUndone(hospital, "p-5"); }, absl::Seconds(20)));
  CHECK(GetPatient(hospital, "p-5").status() == patients_v1::ALIVE);
  REQUIRE(Admission(hospital, "p-5", &admission).ok());
  CHECK(admission.status() == morgue_v1::CANCELLED);

  // A death that completes has confirmed its admission by the time the caller hears OK.
  hospital.CreatePatient("p-6");
  patients_v1::RecordDeathResponse recorded;
  REQUIRE(hospital.RecordDeath("p-6", &recorded).ok());
  REQUIRE(Admission(hospital, "p-6", &admission).ok());
  CHECK_FALSE(admission.provisional());
  CHECK(ReleaseBody(hospital, recorded.morgue().admission_id()).ok());
}

TEMPLATE_TEST_CASE("without a policy, a service too slow for the caller's deadline is named",
                   "[hospital]", SqliteEngine, PostgresEngine) {
  testing_support::HospitalOptions options = testing_support::OnEngine(TestType::kEngine);
  options.policy_json = "";  // The library's defaults and the built-in deadline margin.
  Hospital hospital(options);
  hospital.Start();
  hospital.CreatePatient("p-4");
  hospital.appointments_process().Freeze();
  patients_v1::RecordDeathResponse response;
  const grpc::Status status = hospital.RecordDeath("p-4", &response, absl::Seconds(2));
  hospital.appointments_process().Unfreeze();
  CHECK(status.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK_THAT(status.error_message(), Catch::Contains("appointments (DEADLINE_EXCEEDED"));
  CHECK(GetPatient(hospital, "p-4").status() == patients_v1::ALIVE);
}

TEMPLATE_TEST_CASE("concurrent RecordDeath for one patient admits once", "[hospital]", SqliteEngine,
                   PostgresEngine) {
  Hospital hospital(testing_support::OnEngine(TestType::kEngine));
  hospital.Start();
  hospital.CreatePatient("p-4");
  std::atomic<int> fresh{0};
  std::atomic<int> replayed{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> callers;
  for (int i = 0; i < 8; ++i) {
    callers.emplace_back([&] {
      patients_v1::RecordDeathResponse response;
      const grpc::Status status = hospital.RecordDeath("p-4", &response);
      if (status.ok()) {
        (response.replayed() ? replayed : fresh).fetch_add(1);
      } else if (status.error_code() == grpc::StatusCode::ABORTED) {
        refused.fetch_add(1);
      }
    });
  }
  for (std::thread& caller : callers) caller.join();
  CHECK(fresh.load() == 1);
  CHECK(fresh.load() + replayed.load() + refused.load() == 8);

  morgue_v1::ListAdmissionsRequest list;
  morgue_v1::ListAdmissionsResponse admissions;
  auto context = ContextWithTimeout(absl::Seconds(10));
  REQUIRE(hospital.morgue().ListAdmissions(context.get(), list, &admissions).ok());
  CHECK(admissions.admissions_size() == 1);
}

TEMPLATE_TEST_CASE("a restarted service keeps its data", "[hospital]", SqliteEngine,
                   PostgresEngine) {
  Hospital hospital(testing_support::OnEngine(TestType::kEngine));
  hospital.Start();
  hospital.CreatePatient("p-5");
  REQUIRE(hospital.patients_process().Terminate() == 0);
  REQUIRE(hospital.patients_process().Start().ok());
  CHECK(GetPatient(hospital, "p-5").given_name() == "Ada");
}

TEMPLATE_TEST_CASE("SIGTERM under load finishes or cleanly fails every call",
                   "[hospital][shutdown]", SqliteEngine, PostgresEngine) {
  Hospital hospital(testing_support::OnEngine(TestType::kEngine));
  hospital.Start();
  hospital.CreatePatient("p-6");
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0};
  std::atomic<int> refused{0};
  std::atomic<int> other{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&, i] {
      for (int n = 0; !stop.load(); ++n) {
        patients_v1::CreatePatientRequest request;
        request.set_patient_id(absl::StrCat("load-", i, "-", n));
        request.set_given_name("Load");
        request.set_family_name("Test");
        request.set_date_of_birth("2000-01-01");
        patients_v1::Patient patient;
        auto context = ContextWithTimeout(absl::Seconds(10));
        const grpc::Status status =
            hospital.patients().CreatePatient(context.get(), request, &patient);
        if (status.ok()) {
          ok.fetch_add(1);
        } else if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                   status.error_code() == grpc::StatusCode::CANCELLED) {
          refused.fetch_add(1);
        } else {
          other.fetch_add(1);
        }
      }
    });
  }
  REQUIRE(Eventually([&] { return ok.load() > 50; }, absl::Seconds(20)));
  const absl::Time start = absl::Now();
  const int exit_code = hospital.patients_process().Terminate();
  stop.store(true);
  for (std::thread& client : clients) client.join();
  CHECK(exit_code == 0);
  CHECK(absl::Now() - start < absl::Seconds(6));  // Within the 5 s grace.
  CHECK(other.load() == 0);
  // Every acknowledged write is there after a restart.
  REQUIRE(hospital.patients_process().Start().ok());
  patients_v1::ListPatientsRequest list;
  list.set_page_size(500);
  int stored = 0;
  std::string token;
  do {
    list.set_page_token(token);
    patients_v1::ListPatientsResponse page;
    auto context = ContextWithTimeout(absl::Seconds(10), /*wait_for_ready=*/true);
    REQUIRE(hospital.patients().ListPatients(context.get(), list, &page).ok());
    stored += page.patients_size();
    token = page.next_page_token();
  } while (!token.empty());
  CHECK(stored >= ok.load() + 1);
  CHECK_THAT(hospital.patients_process().log(), Catch::Contains("\"event\":\"database_closed\""));
}

}  // namespace
