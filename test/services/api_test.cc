// What operators see: reflection and health as grpcurl uses them, and clear errors for bad
// input that change nothing.
#include <google/protobuf/util/time_util.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>

#include <fstream>
#include <thread>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/sync.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "server_kit/rpc_support.h"
#include "server_kit/serve.h"
#include "support/hospital_fixture.h"

namespace {

using testing_support::ContextWithTimeout;
using testing_support::Hospital;
namespace patients_v1 = hospital::patients::v1;
namespace morgue_v1 = hospital::morgue::v1;
namespace appointments_v1 = hospital::appointments::v1;
namespace reflection = grpc::reflection::v1alpha;

// One reflection request and its answer, as grpcurl sends them.
reflection::ServerReflectionResponse Reflect(const std::string& address,
                                             const reflection::ServerReflectionRequest& request) {
  auto stub = reflection::ServerReflection::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  auto context = ContextWithTimeout(absl::Seconds(10));
  auto stream = stub->ServerReflectionInfo(context.get());
  REQUIRE(stream->Write(request));
  stream->WritesDone();
  reflection::ServerReflectionResponse response;
  REQUIRE(stream->Read(&response));
  reflection::ServerReflectionResponse extra;
  while (stream->Read(&extra)) {
  }
  REQUIRE(stream->Finish().ok());
  return response;
}

grpc::health::v1::HealthCheckResponse::ServingStatus Health(const std::string& address,
                                                            const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  auto context = ContextWithTimeout(absl::Seconds(10));
  const grpc::Status status = stub->Check(context.get(), request, &response);
  INFO(service << ": " << status.error_message());
  REQUIRE(status.ok());
  return response.status();
}

TEST_CASE("reflection lists and describes every service, health included", "[api]") {
  Hospital hospital;
  hospital.Start();
  for (testing_support::ServiceProcess* process :
       {&hospital.patients_process(), &hospital.morgue_process(),
        &hospital.appointments_process()}) {
    reflection::ServerReflectionRequest list;
    list.set_list_services("*");
    const reflection::ServerReflectionResponse listed = Reflect(process->address(), list);
    std::vector<std::string> names;
    for (const auto& service : listed.list_services_response().service()) {
      names.push_back(service.name());
    }
    CHECK_THAT(names, Catch::VectorContains(std::string("grpc.health.v1.Health")));
    CHECK_THAT(names,
               Catch::VectorContains(std::string("grpc.reflection.v1alpha.ServerReflection")));

    // `grpcurl describe grpc.health.v1.Health` needs the file that defines it.
    reflection::ServerReflectionRequest describe;
    describe.set_file_containing_symbol("grpc.health.v1.Health");
    const reflection::ServerReflectionResponse described = Reflect(process->address(), describe);
    INFO(described.error_response().error_message());
    CHECK(described.has_file_descriptor_response());
  }
  reflection::ServerReflectionRequest list;
  list.set_list_services("*");
  const reflection::ServerReflectionResponse listed =
      Reflect(hospital.patients_process().address(), list);
  std::vector<std::string> names;
  for (const auto& service : listed.list_services_response().service()) {
    names.push_back(service.name());
  }
  CHECK_THAT(names, Catch::VectorContains(std::string("hospital.patients.v1.PatientsService")));
  // Operator surfaces are on the admin listener only, where reflection lists them.
  CHECK_THAT(names, !Catch::VectorContains(std::string("resilience.v1.ResilienceAdmin")));
  names.clear();
  const reflection::ServerReflectionResponse admin_listed =
      Reflect(hospital.patients_process().admin_address(), list);
  for (const auto& service : admin_listed.list_services_response().service()) {
    names.push_back(service.name());
  }
  CHECK_THAT(names, Catch::VectorContains(std::string("resilience.v1.ResilienceAdmin")));
  CHECK_THAT(names, !Catch::VectorContains(std::string("hospital.patients.v1.PatientsService")));

  reflection::ServerReflectionRequest describe;
  describe.set_file_containing_symbol("hospital.patients.v1.PatientsService.RecordDeath");
  CHECK(Reflect(hospital.patients_process().address(), describe).has_file_descriptor_response());
}

TEST_CASE("health reports liveness, readiness and each service", "[api]") {
  Hospital hospital;
  hospital.Start();
  using Status = grpc::health::v1::HealthCheckResponse;
  const std::string address = hospital.morgue_process().address();
  CHECK(testing_support::Eventually([&] { return Health(address, "readiness") == Status::SERVING; },
                                    absl::Seconds(5)));
  CHECK(Health(address, "") == Status::SERVING);
  CHECK(Health(address, "liveness") == Status::SERVING);
  CHECK(Health(address, "hospital.morgue.v1.MorgueService") == Status::SERVING);
  CHECK(Health(hospital.patients_process().address(), "hospital.patients.v1.PatientsService") ==
        Status::SERVING);
  CHECK(Health(hospital.appointments_process().address(),
               "hospital.appointments.v1.AppointmentsService") == Status::SERVING);
}

TEST_CASE("bad input gets a clear error naming the field and changes nothing", "[api]") {
  Hospital hospital;
  hospital.Start();
  hospital.CreatePatient("p-1");
  auto expect = [](const grpc::Status& status, grpc::StatusCode code, const std::string& field) {
    INFO(status.error_message());
    CHECK(status.error_code() == code);
    CHECK_THAT(status.error_message(), Catch::StartsWith(field));
  };

  patients_v1::Patient patient;
  patients_v1::CreatePatientRequest create;
  create.set_given_name("Ada");
  create.set_family_name("Lovelace");
  create.set_date_of_birth("1990-12-10");
  create.set_patient_id(std::string(65, 'x'));
  expect(hospital.patients().CreatePatient(ContextWithTimeout(absl::Seconds(5)).get(), create,
                                           &patient),
         grpc::StatusCode::INVALID_ARGUMENT, "patient_id");
  create.set_patient_id("p-2");
  create.set_given_name("");
  expect(hospital.patients().CreatePatient(ContextWithTimeout(absl::Seconds(5)).get(), create,
                                           &patient),
         grpc::StatusCode::INVALID_ARGUMENT, "given_name");
  create.set_given_name(std::string(101, 'a'));
  expect(hospital.patients().CreatePatient(ContextWithTimeout(absl::Seconds(5)).get(), create,
                                           &patient),
         grpc::StatusCode::INVALID_ARGUMENT, "given_name");
  create.set_given_name("Ada");
  create.set_family_name("");
  expect(hospital.patients().CreatePatient(ContextWithTimeout(absl::Seconds(5)).get(), create,
                                           &patient),
         grpc::StatusCode::INVALID_ARGUMENT, "family_name");
  create.set_family_name(std::string(101, 'a'));
  expect(hospital.patients().CreatePatient(ContextWithTimeout(absl::Seconds(5)).get(), create,
                                           &patient),
         grpc::StatusCode::INVALID_ARGUMENT, "family_name");
  create.set_family_name("Lovelace");
  create.set_date_of_birth("1990-02-30");
  expect(hospital.patients().CreatePatient(ContextWithTimeout(absl::Seconds(5)).get(), create,
                                           &patient),
         grpc::StatusCode::INVALID_ARGUMENT, "date_of_birth");
  create.set_date_of_birth("1990-12-10");
  create.mutable_contact()->set_email("not-an-address");
  expect(hospital.patients().CreatePatient(ContextWithTimeout(absl::Seconds(5)).get(), create,
                                           &patient),
         grpc::StatusCode::INVALID_ARGUMENT, "contact.email");
  create.clear_contact();
  create.set_patient_id("p-1");
  expect(hospital.patients().CreatePatient(ContextWithTimeout(absl::Seconds(5)).get(), create,
                                           &patient),
         grpc::StatusCode::ALREADY_EXISTS, "patient_id");

  patients_v1::GetPatientRequest get;
  get.set_patient_id("nobody");
  expect(hospital.patients().GetPatient(ContextWithTimeout(absl::Seconds(5)).get(), get, &patient),
         grpc::StatusCode::NOT_FOUND, "patient_id");

  patients_v1::RecordDeathRequest death;
  patients_v1::RecordDeathResponse died;
  death.set_patient_id("p-1");
  death.set_cause("unknown");
  *death.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now() + absl::Hours(1));
  expect(hospital.patients().RecordDeath(ContextWithTimeout(absl::Seconds(5)).get(), death, &died),
         grpc::StatusCode::INVALID_ARGUMENT, "time_of_death");
  death.clear_time_of_death();
  expect(hospital.patients().RecordDeath(ContextWithTimeout(absl::Seconds(5)).get(), death, &died),
         grpc::StatusCode::INVALID_ARGUMENT, "time_of_death");
  *death.mutable_time_of_death() = server_kit::ToProtoTime(absl::FromUnixSeconds(0));
  expect(hospital.patients().RecordDeath(ContextWithTimeout(absl::Seconds(5)).get(), death, &died),
         grpc::StatusCode::INVALID_ARGUMENT, "time_of_death");  // Before the date of birth.
  *death.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now());
  death.set_cause("");
  expect(hospital.patients().RecordDeath(ContextWithTimeout(absl::Seconds(5)).get(), death, &died),
         grpc::StatusCode::INVALID_ARGUMENT, "cause");
  death.set_cause("unknown");
  death.set_patient_id("nobody");
  expect(hospital.patients().RecordDeath(ContextWithTimeout(absl::Seconds(5)).get(), death, &died),
         grpc::StatusCode::NOT_FOUND, "patient_id");

  patients_v1::ListPatientsRequest list;
  patients_v1::ListPatientsResponse listed;
  list.set_page_token("garbage!");
  expect(
      hospital.patients().ListPatients(ContextWithTimeout(absl::Seconds(5)).get(), list, &listed),
      grpc::StatusCode::INVALID_ARGUMENT, "page_token");
  list.set_page_token("");
  list.set_page_size(-1);
  expect(
      hospital.patients().ListPatients(ContextWithTimeout(absl::Seconds(5)).get(), list, &listed),
      grpc::StatusCode::INVALID_ARGUMENT, "page_size");

  appointments_v1::ScheduleAppointmentRequest book;
  appointments_v1::Appointment booked;
  book.set_patient_id("p-1");
  book.set_clinician("Dr. Snow");
  *book.mutable_scheduled_time() = server_kit::ToProtoTime(absl::Now() - absl::Hours(1));
  expect(hospital.appointments().ScheduleAppointment(ContextWithTimeout(absl::Seconds(5)).get(),
                                                     book, &booked),
         grpc::StatusCode::INVALID_ARGUMENT, "scheduled_time");

  morgue_v1::ReleaseBodyRequest release;
  morgue_v1::Admission released;
  release.set_admission_id("nope");
  release.set_funeral_home("Hill & Sons");
  expect(
      hospital.morgue().ReleaseBody(ContextWithTimeout(absl::Seconds(5)).get(), release, &released),
      grpc::StatusCode::NOT_FOUND, "admission_id");

  // None of it was written: p-1 is the only patient, alive, with no appointments.
  list.set_page_size(0);
  REQUIRE(hospital.patients()
              .ListPatients(ContextWithTimeout(absl::Seconds(5)).get(), list, &listed)
              .ok());
  REQUIRE(listed.patients_size() == 1);
  CHECK(listed.patients(0).status() == patients_v1::ALIVE);
}

TEST_CASE("times outside 1800 to 2200 are refused, and what is stored comes back exactly",
          "[api]") {
  Hospital hospital;
  hospital.Start();
  hospital.CreatePatient("p-1");  // Born 1990-12-10.
  const auto at = [](const std::string& rfc3339) {
    google::protobuf::Timestamp timestamp;
    REQUIRE(google::protobuf::util::TimeUtil::FromString(rfc3339, &timestamp));
    return timestamp;
  };
  appointments_v1::ScheduleAppointmentRequest book;
  book.set_patient_id("p-1");
  book.set_clinician("Dr. Snow");
  appointments_v1::Appointment appointment;
  // Once clamped to 2262-04-11 on the way back, and paged over forever.
  *book.mutable_scheduled_time() = at("3000-01-01T00:00:00Z");
  grpc::Status status = hospital.appointments().ScheduleAppointment(
      ContextWithTimeout(absl::Seconds(5)).get(), book, &appointment);
  CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(status.error_message(), Catch::StartsWith("scheduled_time: must be from 1800"));
  // The latest accepted time, to the microsecond, round-trips unchanged.
  *book.mutable_scheduled_time() = at("2199-12-31T23:59:59.999999Z");
  REQUIRE(hospital.appointments()
              .ScheduleAppointment(ContextWithTimeout(absl::Seconds(5)).get(), book, &appointment)
              .ok());
  CHECK(google::protobuf::util::TimeUtil::ToString(appointment.scheduled_time()) ==
        "2199-12-31T23:59:59.999999Z");
  appointments_v1::GetAppointmentRequest get;
  get.set_appointment_id(appointment.appointment_id());
  appointments_v1::Appointment stored;
  REQUIRE(hospital.appointments()
              .GetAppointment(ContextWithTimeout(absl::Seconds(5)).get(), get, &stored)
              .ok());
  CHECK(google::protobuf::util::TimeUtil::ToString(stored.scheduled_time()) ==
        "2199-12-31T23:59:59.999999Z");

  patients_v1::RecordDeathRequest death;
  death.set_patient_id("p-1");
  death.set_cause("stroke");
  patients_v1::RecordDeathResponse recorded;
  // Year 999 once passed the date-of-birth check: "999-..." sorted after "1990-..." as text.
  *death.mutable_time_of_death() = at("0999-06-01T00:00:00Z");
  status =
      hospital.patients().RecordDeath(ContextWithTimeout(absl::Seconds(5)).get(), death, &recorded);
  CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(status.error_message(), Catch::StartsWith("time_of_death: must be from 1800"));
  *death.mutable_time_of_death() = at("1990-12-09T23:59:59Z");
  status =
      hospital.patients().RecordDeath(ContextWithTimeout(absl::Seconds(5)).get(), death, &recorded);
  CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(status.error_message(),
             Catch::Contains("1990-12-09 is before the date of birth 1990-12-10"));
}

// The patients service's refusals of `reason` before any handler (hospital_rpc_refusals_total).
double PatientsRefusals(Hospital& hospital, const std::string& reason) {
  const absl::StatusOr<std::string> scrape =
      testing_support::ScrapeMetrics(hospital.patients_process().metrics_port());
  REQUIRE(scrape.ok());
  return testing_support::SumSamples(*scrape, "hospital_rpc_refusals_total",
                                     {"listener=\"public\"", "reason=\"" + reason + "\""});
}

testing_support::HospitalOptions WithMetrics() {
  testing_support::HospitalOptions options;
  options.with_metrics = true;
  return options;
}

TEST_CASE("a request gRPC cannot parse gets INVALID_ARGUMENT naming its type", "[api]") {
  Hospital hospital(WithMetrics());
  hospital.Start();
  // CreatePatientRequest with patient_id "p-x" and given_name one byte 0xff: not UTF-8, which
  // proto3 requires of a string; gRPC's parser refuses it before any handler runs.
  const std::string bytes = std::string("\x0a\x03p-x\x12\x01\xff", 8);
  grpc::GenericStub stub(grpc::CreateChannel(hospital.patients_process().address(),
                                             grpc::InsecureChannelCredentials()));
  grpc::Slice slice(bytes);
  grpc::ByteBuffer sent(&slice, 1);
  grpc::ByteBuffer received;
  grpc::Status result;
  base::Notification done;
  auto context = ContextWithTimeout(absl::Seconds(5));
  stub.UnaryCall(context.get(), "/hospital.patients.v1.PatientsService/CreatePatient",
                 grpc::StubOptions(), &sent, &received, [&](grpc::Status status) {
                   result = std::move(status);
                   done.Notify();
                 });
  done.WaitForNotification();
  CHECK(result.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(result.error_message(),
             Catch::StartsWith("request: cannot be parsed as "
                               "hospital.patients.v1.CreatePatientRequest"));
  patients_v1::GetPatientRequest get;
  get.set_patient_id("p-x");
  patients_v1::Patient patient;
  CHECK(hospital.patients()
            .GetPatient(ContextWithTimeout(absl::Seconds(5)).get(), get, &patient)
            .error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(PatientsRefusals(hospital, "unparsable") == 1);
  CHECK(PatientsRefusals(hospital, "threads_exhausted") == 0);
}

TEST_CASE("a call whose request message never arrives gets UNAVAILABLE, not INVALID_ARGUMENT",
          "[api]") {
  Hospital hospital(WithMetrics());
  hospital.Start();
  // A unary method called as a stream that closes without sending a message: the server
  // finds no payload, which says nothing about the request's content.
  grpc::GenericStub stub(grpc::CreateChannel(hospital.patients_process().address(),
                                             grpc::InsecureChannelCredentials()));
  grpc::CompletionQueue queue;
  auto context = ContextWithTimeout(absl::Seconds(5));
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(context.get(), "/hospital.patients.v1.PatientsService/GetPatient", &queue);
  const auto await = [&queue](void* expected) {
    void* tag = nullptr;
    bool ok = false;
    REQUIRE(queue.Next(&tag, &ok));
    CHECK(tag == expected);
  };
  int start = 0;
  int writes_done = 0;
  int finish = 0;
  call->StartCall(&start);
  await(&start);
  call->WritesDone(&writes_done);
  await(&writes_done);
  grpc::Status status;
  call->Finish(&status, &finish);
  await(&finish);
  queue.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (queue.Next(&tag, &ok)) {
  }
  CHECK(status.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK_THAT(status.error_message(), Catch::StartsWith("request: no message arrived"));
  CHECK(PatientsRefusals(hospital, "no_message") == 1);
  CHECK(PatientsRefusals(hospital, "unparsable") == 0);
}

TEST_CASE("lists are paginated with page tokens and filtered by status", "[api]") {
  Hospital hospital;
  hospital.Start();
  for (int i = 0; i < 7; ++i) hospital.CreatePatient(absl::StrCat("p-", i));
  patients_v1::ListPatientsRequest list;
  list.set_page_size(3);
  std::vector<std::string> seen;
  int pages = 0;
  do {
    patients_v1::ListPatientsResponse page;
    REQUIRE(hospital.patients()
                .ListPatients(ContextWithTimeout(absl::Seconds(5)).get(), list, &page)
                .ok());
    ++pages;
    for (const auto& patient : page.patients()) seen.push_back(patient.patient_id());
    list.set_page_token(page.next_page_token());
  } while (!list.page_token().empty());
  CHECK(pages == 3);
  CHECK(seen == std::vector<std::string>{"p-0", "p-1", "p-2", "p-3", "p-4", "p-5", "p-6"});

  list.set_page_size(0);
  list.set_status(patients_v1::DECEASED);
  patients_v1::ListPatientsResponse deceased;
  REQUIRE(hospital.patients()
              .ListPatients(ContextWithTimeout(absl::Seconds(5)).get(), list, &deceased)
              .ok());
  CHECK(deceased.patients_size() == 0);
}

TEST_CASE("a client that pings too often is sent away", "[api][limits]") {
  testing_support::TempDir faults;
  const std::string faults_file = faults.path() + "/faults.json";
  std::ofstream(faults_file) << R"({"faults": [{"id": "slow",
      "method": "hospital.morgue.v1.MorgueService/GetAdmission",
      "delay": {"fixed": "6s"}}]})";
  testing_support::HospitalOptions options;
  options.morgue_flags = {absl::StrCat("--faults_file=", faults_file)};
  Hospital hospital(options);
  hospital.Start();
  // Keepalive pings as fast as gRPC's client sends them (one a second at most) while a call
  // waits for its answer: the server allows one every 10 s without data, and after two
  // strikes closes the connection (GOAWAY "too_many_pings"), failing the call.
  grpc::ChannelArguments abusive;
  abusive.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 50);
  abusive.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  abusive.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  auto stub = morgue_v1::MorgueService::NewStub(grpc::CreateCustomChannel(
      hospital.morgue_process().address(), grpc::InsecureChannelCredentials(), abusive));
  morgue_v1::GetAdmissionRequest request;
  request.set_admission_id("a-1");
  morgue_v1::Admission admission;
  const absl::Time start = absl::Now();
  const grpc::Status sent_away =
      stub->GetAdmission(ContextWithTimeout(absl::Seconds(10)).get(), request, &admission);
  INFO(sent_away.error_message());
  CHECK(sent_away.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(absl::Now() - start < absl::Milliseconds(5500));  // Before the 6 s answer.
  // The service itself is unharmed: a well-behaved client is served.
  morgue_v1::ListAdmissionsRequest list;
  morgue_v1::ListAdmissionsResponse listed;
  CHECK(hospital.morgue()
            .ListAdmissions(ContextWithTimeout(absl::Seconds(5)).get(), list, &listed)
            .ok());
}

TEST_CASE("personal data never reaches logs or metrics, even with --rpc_logging=all",
          "[api][privacy]") {
  testing_support::HospitalOptions options;
  options.every_service_flags = {"--rpc_logging=all"};
  options.with_metrics = true;
  Hospital hospital(options);
  hospital.Start();
  // Distinctive values, so that any trace of them in a log line or a label is found.
  const std::vector<std::string> personal = {
      "Zebulonia",     "Quaxworth",       "1931-02-03",  "7700 900123",        "zq@example.org",
      "Quillfeather",  "Xylophage fever", "7700 900456", "zq.new@example.org", "9OO123x",
      "zq at example", "2999-12-31",      "1700-01-01",  "31/12/1999",         "Bad cause"};
  const auto create = [&](const std::string& id, const std::string& date_of_birth,
                          const std::string& phone, const std::string& email) {
    patients_v1::CreatePatientRequest request;
    request.set_patient_id(id);
    request.set_given_name("Zebulonia");
    request.set_family_name("Quaxworth");
    request.set_date_of_birth(date_of_birth);
    request.mutable_contact()->set_phone(phone);
    request.mutable_contact()->set_email(email);
    request.mutable_contact()->set_address("12 Quillfeather Lane");
    patients_v1::Patient created;
    return hospital.patients()
        .CreatePatient(ContextWithTimeout(absl::Seconds(5)).get(), request, &created)
        .error_code();
  };
  REQUIRE(create("p-private", "1931-02-03", "+44 7700 900123", "zq@example.org") ==
          grpc::StatusCode::OK);
  // Refused, each for a personal field: the refusal (and its log line) must not repeat it.
  CHECK(create("p-bad-1", "1931-02-03", "+44 7700 9OO123x", "zq@example.org") ==
        grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(create("p-bad-2", "1931-02-03", "+44 7700 900123", "zq at example.org") ==
        grpc::StatusCode::INVALID_ARGUMENT);
  for (const char* date_of_birth : {"2999-12-31", "1700-01-01", "31/12/1999"}) {
    CHECK(create("p-bad-3", date_of_birth, "+44 7700 900123", "zq@example.org") ==
          grpc::StatusCode::INVALID_ARGUMENT);
  }
  patients_v1::UpdateContactDetailsRequest update;
  update.set_patient_id("p-private");
  update.mutable_contact()->set_phone("+44 7700 900456");
  update.mutable_contact()->set_email("zq.new@example.org");
  patients_v1::Patient updated;
  REQUIRE(hospital.patients()
              .UpdateContactDetails(ContextWithTimeout(absl::Seconds(5)).get(), update, &updated)
              .ok());
  hospital.Schedule("p-private", absl::Hours(24));
  patients_v1::RecordDeathRequest death;
  death.set_patient_id("p-private");
  *death.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now() - absl::Minutes(5));
  death.set_cause(std::string("Bad cause\x01"));  // A control character: refused.
  patients_v1::RecordDeathResponse recorded;
  CHECK(hospital.patients()
            .RecordDeath(ContextWithTimeout(absl::Seconds(10)).get(), death, &recorded)
            .error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  death.set_cause("Xylophage fever");
  REQUIRE(hospital.patients()
              .RecordDeath(ContextWithTimeout(absl::Seconds(10)).get(), death, &recorded)
              .ok());
  patients_v1::GetPatientRequest get;
  get.set_patient_id("p-private");
  patients_v1::Patient found;
  REQUIRE(
      hospital.patients().GetPatient(ContextWithTimeout(absl::Seconds(5)).get(), get, &found).ok());

  std::vector<std::pair<std::string, std::string>> outputs;  // What, text.
  for (testing_support::ServiceProcess* process :
       {&hospital.patients_process(), &hospital.morgue_process(),
        &hospital.appointments_process()}) {
    absl::StatusOr<std::string> scrape = testing_support::ScrapeMetrics(process->metrics_port());
    REQUIRE(scrape.ok());
    outputs.emplace_back(absl::StrCat("metrics of port ", process->grpc_port()), *scrape);
  }
  hospital.Stop();  // Every log line written.
  for (testing_support::ServiceProcess* process :
       {&hospital.patients_process(), &hospital.morgue_process(),
        &hospital.appointments_process()}) {
    outputs.emplace_back(absl::StrCat("log of port ", process->grpc_port()), process->log());
  }
  // The scan looks at something: every call was logged, the refusals with their messages.
  CHECK_THAT(outputs[3].second, Catch::Contains("CreatePatient"));
  CHECK_THAT(outputs[3].second, Catch::Contains("date_of_birth: is in the future"));
  CHECK_THAT(outputs[3].second, Catch::Contains("contact.phone: may hold only digits"));
  CHECK_THAT(outputs[4].second, Catch::Contains("AdmitDeceased"));
  for (const auto& [what, text] : outputs) {
    for (const std::string& value : personal) {
      INFO(what << " holds \"" << value << "\"");
      CHECK(text.find(value) == std::string::npos);
    }
  }
}

TEST_CASE("a request larger than --max_request_bytes is refused and changes nothing",
          "[api][limits]") {
  Hospital hospital;
  hospital.Start();
  patients_v1::CreatePatientRequest create;
  create.set_patient_id("p-huge");
  create.set_given_name(std::string(100 * 1024, 'x'));  // Over the 64 KiB limit.
  create.set_family_name("Doe");
  create.set_date_of_birth("1950-01-01");
  patients_v1::Patient created;
  const grpc::Status refused = hospital.patients().CreatePatient(
      ContextWithTimeout(absl::Seconds(5)).get(), create, &created);
  CHECK(refused.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  INFO(refused.error_message());
  CHECK_THAT(refused.error_message(), Catch::Contains("larger than max"));
  patients_v1::GetPatientRequest get;
  get.set_patient_id("p-huge");
  patients_v1::Patient found;
  CHECK(hospital.patients()
            .GetPatient(ContextWithTimeout(absl::Seconds(5)).get(), get, &found)
            .error_code() == grpc::StatusCode::NOT_FOUND);
  hospital.CreatePatient("p-normal");  // The connection still serves ordinary requests.
}

TEST_CASE("a second process on a port in use refuses to start, as do bad replica names",
          "[api][limits]") {
  // gRPC would share the port (SO_REUSEPORT) and the two would split its connections.
  Hospital hospital;
  hospital.Start();
  testing_support::TempDir dir;
  const std::string log = absl::StrCat(dir.path(), "/second.log");
  const absl::Status second = testing_support::RunToCompletion(
      {testing_support::BinaryPath("morgue"),
       absl::StrCat("--listen=127.0.0.1:", hospital.morgue_process().grpc_port()),
       "--admin_listen=none", "--metrics_listen=none", absl::StrCat("--db=", dir.path(), "/m.db")},
      log);
  CHECK_FALSE(second.ok());
  std::ifstream file(log);
  const std::string output((std::istreambuf_iterator<char>(file)),
                           std::istreambuf_iterator<char>());
  CHECK_THAT(output, Catch::Contains("address in use"));

  const absl::Status bad_name = testing_support::RunToCompletion(
      {testing_support::BinaryPath("morgue"), "--listen=127.0.0.1:0", "--replica_name=a b",
       "--admin_listen=none", "--metrics_listen=none", absl::StrCat("--db=", dir.path(), "/n.db")},
      log);
  CHECK_FALSE(bad_name.ok());
  std::ifstream again(log);
  const std::string all((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>());
  CHECK_THAT(all, Catch::Contains("--replica_name: at most 200 characters"));
  CHECK(hospital.CreatePatient("p-1").patient_id() == "p-1");  // The first still serves.
}

TEST_CASE("one connection has at most --max_concurrent_streams calls open and the rest wait",
          "[api][limits]") {
  testing_support::TempDir faults;
  const std::string faults_file = faults.path() + "/faults.json";
  std::ofstream(faults_file) << R"({"faults": [{"id": "slow",
      "method": "hospital.morgue.v1.MorgueService/GetAdmission",
      "delay": {"fixed": "0.3s"}}]})";
  testing_support::HospitalOptions options;
  options.morgue_flags = {absl::StrCat("--faults_file=", faults_file),
                          "--max_concurrent_streams=2"};
  Hospital hospital(options);
  hospital.Start();
  // Four calls at once on the fixture's one channel to the morgue: two streams at a time, so
  // two rounds of 300 ms.
  std::vector<std::thread> callers;
  std::vector<grpc::StatusCode> codes(4);
  const absl::Time start = absl::Now();
  for (int i = 0; i < 4; ++i) {
    callers.emplace_back([&, i] {
      morgue_v1::GetAdmissionRequest request;
      request.set_admission_id(absl::StrCat("a-", i));
      morgue_v1::Admission admission;
      codes[i] = hospital.morgue()
                     .GetAdmission(ContextWithTimeout(absl::Seconds(10)).get(), request, &admission)
                     .error_code();
    });
  }
  for (std::thread& caller : callers) caller.join();
  const absl::Duration elapsed = absl::Now() - start;
  for (grpc::StatusCode code : codes) CHECK(code == grpc::StatusCode::NOT_FOUND);
  CHECK(elapsed >= absl::Milliseconds(590));
  CHECK(elapsed < absl::Seconds(5));
}

TEST_CASE("concurrent duplicates of one AdmitDeceased, as hedging sends them, admit once",
          "[api][hedging]") {
  Hospital hospital;
  hospital.Start();
  morgue_v1::AdmitDeceasedRequest admit;
  admit.set_patient_id("p-hedged");
  admit.set_workflow_id("w-hedged");
  admit.set_cause("old age");
  *admit.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now() - absl::Hours(1));
  // Several rounds of eight at once, each round a new patient: the duplicates race inside the
  // service (group commit), not one after another.
  for (int round = 0; round < 5; ++round) {
    admit.set_patient_id(absl::StrCat("p-hedged-", round));
    admit.set_workflow_id(absl::StrCat("w-hedged-", round));
    constexpr int kDuplicates = 8;
    std::vector<morgue_v1::AdmitDeceasedResponse> responses(kDuplicates);
    std::vector<grpc::Status> statuses(kDuplicates);
    std::vector<std::thread> senders;
    base::Notification go;
    for (int i = 0; i < kDuplicates; ++i) {
      senders.emplace_back([&, i] {
        auto context = ContextWithTimeout(absl::Seconds(10));
        go.WaitForNotification();
        statuses[i] = hospital.morgue().AdmitDeceased(context.get(), admit, &responses[i]);
      });
    }
    go.Notify();
    for (std::thread& sender : senders) sender.join();
    int first_admissions = 0;
    for (int i = 0; i < kDuplicates; ++i) {
      INFO("round " << round << ", duplicate " << i << ": " << statuses[i].error_message());
      REQUIRE(statuses[i].ok());
      CHECK(responses[i].admission().admission_id() == responses[0].admission().admission_id());
      CHECK(responses[i].admission().workflow_id() == admit.workflow_id());
      if (!responses[i].already_admitted()) ++first_admissions;
    }
    CHECK(first_admissions == 1);
  }
  morgue_v1::ListAdmissionsRequest list;
  list.set_page_size(100);
  morgue_v1::ListAdmissionsResponse listed;
  REQUIRE(hospital.morgue()
              .ListAdmissions(ContextWithTimeout(absl::Seconds(5)).get(), list, &listed)
              .ok());
  CHECK(listed.admissions_size() == 5);
}

TEST_CASE("a body is released only once, to a named funeral home", "[api]") {
  Hospital hospital;
  hospital.Start();
  morgue_v1::AdmitDeceasedRequest admit;
  admit.set_patient_id("p-9");
  admit.set_workflow_id("w-9");
  admit.set_cause("old age");
  *admit.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now() - absl::Hours(1));
  morgue_v1::AdmitDeceasedResponse admitted;
  REQUIRE(hospital.morgue()
              .AdmitDeceased(ContextWithTimeout(absl::Seconds(5)).get(), admit, &admitted)
              .ok());
  morgue_v1::AdmitDeceasedResponse again;
  REQUIRE(hospital.morgue()
              .AdmitDeceased(ContextWithTimeout(absl::Seconds(5)).get(), admit, &again)
              .ok());
  CHECK(again.already_admitted());
  CHECK(again.admission().admission_id() == admitted.admission().admission_id());

  morgue_v1::ReleaseBodyRequest release;
  release.set_admission_id(admitted.admission().admission_id());
  morgue_v1::Admission released;
  REQUIRE_FALSE(hospital.morgue()
                    .ReleaseBody(ContextWithTimeout(absl::Seconds(5)).get(), release,
                                 &released)
                    .ok());  // No funeral home.
  release.set_funeral_home("Hill & Sons");
  // The admission is provisional until its workflow confirms it: the death may still be undone.
  CHECK(admitted.admission().provisional());
  {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    const grpc::Status early = hospital.morgue().ReleaseBody(&context, release, &released);
    CHECK(early.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
    CHECK_THAT(early.error_message(), Catch::Contains("provisional"));
    CHECK(server_kit::ErrorReasonOf(context) == "ADMISSION_PROVISIONAL");
  }
  morgue_v1::ConfirmAdmissionRequest confirm;
  confirm.set_patient_id("p-9");
  confirm.set_workflow_id("w-9");
  morgue_v1::ConfirmAdmissionResponse confirmed;
  REQUIRE(hospital.morgue()
              .ConfirmAdmission(ContextWithTimeout(absl::Seconds(5)).get(), confirm, &confirmed)
              .ok());
  CHECK_FALSE(confirmed.admission().provisional());
  CHECK_FALSE(confirmed.already_confirmed());
  confirm.set_workflow_id("");
  CHECK(hospital.morgue()
            .ConfirmAdmission(ContextWithTimeout(absl::Seconds(5)).get(), confirm, &confirmed)
            .error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  REQUIRE(hospital.morgue()
              .ReleaseBody(ContextWithTimeout(absl::Seconds(5)).get(), release, &released)
              .ok());
  CHECK(released.status() == morgue_v1::RELEASED);
  const grpc::Status twice =
      hospital.morgue().ReleaseBody(ContextWithTimeout(absl::Seconds(5)).get(), release, &released);
  CHECK(twice.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  // Compensation cannot undo a released body.
  morgue_v1::CancelAdmissionRequest cancel;
  cancel.set_patient_id("p-9");
  cancel.set_workflow_id("w-9");
  morgue_v1::CancelAdmissionResponse cancelled;
  CHECK(hospital.morgue()
            .CancelAdmission(ContextWithTimeout(absl::Seconds(5)).get(), cancel, &cancelled)
            .error_code() == grpc::StatusCode::FAILED_PRECONDITION);
}

}  // namespace
