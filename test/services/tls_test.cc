// TLS, mutual TLS, certificate rotation and per-caller authorization, against the real binaries
// with certificates made by scripts/make-certs.sh (as an operator would make them).
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "hospital/faults/v1/faults.grpc.pb.h"
#include "server_kit/rpc_support.h"
#include "server_kit/tls.h"
#include "support/hospital_fixture.h"
#include "testing_support/metrics_reader.h"
#include "testing_support/nats_server.h"

namespace {

using testing_support::ContextWithTimeout;
using testing_support::Eventually;
using testing_support::Hospital;
using testing_support::ServiceProcess;
using testing_support::TempDir;
namespace patients_v1 = hospital::patients::v1;
namespace morgue_v1 = hospital::morgue::v1;
namespace appointments_v1 = hospital::appointments::v1;
namespace faults_v1 = hospital::faults::v1;

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// Makes DIR/ca.* (unless present) and DIR/NAME.* for each name with scripts/make-certs.sh.
void MakeCerts(const std::string& dir, const std::vector<std::string>& names) {
  std::vector<std::string> argv = {"bash", testing_support::SourcePath("scripts/make-certs.sh"),
                                   dir};
  argv.insert(argv.end(), names.begin(), names.end());
  const absl::Status made = testing_support::RunToCompletion(argv, dir + ".log");
  INFO(made.ToString() << "\n" << ReadFile(dir + ".log"));
  REQUIRE(made.ok());
}

// The flags that give a service `name`'s certificate from `dir`, and mutual TLS with its CA.
std::vector<std::string> TlsFlags(const std::string& dir, const std::string& name,
                                  bool mutual = true) {
  std::vector<std::string> flags = {absl::StrCat("--tls_cert=", dir, "/", name, ".crt"),
                                    absl::StrCat("--tls_key=", dir, "/", name, ".key"),
                                    "--tls_refresh_interval=1s"};
  if (mutual) flags.push_back(absl::StrCat("--tls_ca=", dir, "/ca.crt"));
  return flags;
}

// A client presenting `name`'s certificate from `cert_dir` and trusting `ca`.
std::shared_ptr<grpc::ChannelCredentials> ClientAs(const std::string& cert_dir,
                                                   const std::string& name, const std::string& ca) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      server_kit::TlsChannelCredentialsFrom(
          {cert_dir + "/" + name + ".crt", cert_dir + "/" + name + ".key", ca, absl::Seconds(1)});
  REQUIRE(credentials.ok());
  return *credentials;
}

// A TLS client that trusts `ca` and presents no certificate.
std::shared_ptr<grpc::ChannelCredentials> AnonymousClient(const std::string& ca) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadFile(ca);
  return grpc::SslCredentials(options);
}

// A fresh channel each time (no connection reused), and the status of one GetAdmission.
grpc::Status GetAdmission(const std::string& address,
                          const std::shared_ptr<grpc::ChannelCredentials>& credentials,
                          grpc::ChannelArguments arguments = {}) {
  // Distinct arguments keep gRPC from sharing a subchannel between these channels.
  static int channel_number = 0;
  arguments.SetInt("hospital.test_channel", ++channel_number);
  auto stub =
      morgue_v1::MorgueService::NewStub(grpc::CreateCustomChannel(address, credentials, arguments));
  morgue_v1::GetAdmissionRequest request;
  request.set_patient_id("p-1");
  morgue_v1::Admission admission;
  return stub->GetAdmission(ContextWithTimeout(absl::Seconds(5)).get(), request, &admission);
}

ServiceProcess Morgue(const TempDir& dir, std::vector<std::string> flags) {
  flags.push_back(absl::StrCat("--db=", dir.path(), "/morgue.db"));
  return ServiceProcess(testing_support::BinaryPath("morgue"), std::move(flags),
                        dir.path() + "/morgue.log", dir.path() + "/morgue.ports",
                        /*with_metrics=*/true);
}

TEST_CASE("a TLS service refuses plaintext, and probes reach health on the plaintext port",
          "[tls]") {
  TempDir dir;
  const std::string certs = dir.path() + "/certs";
  MakeCerts(certs, {"morgue"});
  std::vector<std::string> flags = TlsFlags(certs, "morgue", /*mutual=*/false);
  flags.push_back("--health_listen=127.0.0.1:0");
  ServiceProcess morgue = Morgue(dir, flags);
  REQUIRE(morgue.Start().ok());

  const grpc::Status plaintext = GetAdmission(morgue.address(), grpc::InsecureChannelCredentials());
  CHECK(plaintext.error_code() == grpc::StatusCode::UNAVAILABLE);
  // Server-side TLS only: a client that trusts the CA needs no certificate of its own.
  const grpc::Status tls = GetAdmission(morgue.address(), AnonymousClient(certs + "/ca.crt"));
  CHECK(tls.error_code() == grpc::StatusCode::NOT_FOUND);  // Served: no such admission.

  // What a Kubernetes gRPC probe does: plaintext, no certificate, to the health port.
  REQUIRE(morgue.health_port() > 0);
  auto health = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", morgue.health_port()), grpc::InsecureChannelCredentials()));
  for (const char* name : {"liveness", "readiness", "hospital.morgue.v1.MorgueService"}) {
    INFO(name);
    CHECK(Eventually(
        [&] {
          grpc::health::v1::HealthCheckRequest request;
          request.set_service(name);
          grpc::health::v1::HealthCheckResponse response;
          return health->Check(ContextWithTimeout(absl::Seconds(2)).get(), request, &response)
                     .ok() &&
                 response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
        },
        absl::Seconds(5)));
  }
  // The health port serves health alone.
  const grpc::Status on_health_port = GetAdmission(absl::StrCat("127.0.0.1:", morgue.health_port()),
                                                   grpc::InsecureChannelCredentials());
  CHECK(on_health_port.error_code() == grpc::StatusCode::UNIMPLEMENTED);
  CHECK(morgue.Terminate() == 0);
}

TEST_CASE(
    "mutual TLS refuses a client without a certificate, or with another CA's, or a "
    "server that does not carry the dialled name",
    "[tls]") {
  TempDir dir;
  const std::string certs = dir.path() + "/certs";
  const std::string strangers = dir.path() + "/strangers";
  MakeCerts(certs, {"morgue", "patients"});
  MakeCerts(strangers, {"patients"});  // Same name, another CA.
  ServiceProcess morgue = Morgue(dir, TlsFlags(certs, "morgue"));
  REQUIRE(morgue.Start().ok());
  const std::string ca = certs + "/ca.crt";

  CHECK(GetAdmission(morgue.address(), AnonymousClient(ca)).error_code() ==
        grpc::StatusCode::UNAVAILABLE);
  CHECK(GetAdmission(morgue.address(), ClientAs(strangers, "patients", ca)).error_code() ==
        grpc::StatusCode::UNAVAILABLE);
  CHECK(GetAdmission(morgue.address(), grpc::InsecureChannelCredentials()).error_code() ==
        grpc::StatusCode::UNAVAILABLE);
  CHECK(GetAdmission(morgue.address(), ClientAs(certs, "patients", ca)).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  // The client checks the server's name: the morgue's certificate does not name "appointments".
  grpc::ChannelArguments other_name;
  other_name.SetSslTargetNameOverride("appointments");
  CHECK(GetAdmission(morgue.address(), ClientAs(certs, "patients", ca), other_name).error_code() ==
        grpc::StatusCode::UNAVAILABLE);
  grpc::ChannelArguments right_name;
  right_name.SetSslTargetNameOverride("morgue");
  CHECK(GetAdmission(morgue.address(), ClientAs(certs, "patients", ca), right_name).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  CHECK(morgue.Terminate() == 0);
}

TEST_CASE("a renewed certificate is served without a restart", "[tls]") {
  TempDir dir;
  const std::string certs = dir.path() + "/certs";
  const std::string renewed = dir.path() + "/renewed";
  MakeCerts(certs, {"morgue", "patients"});
  MakeCerts(renewed, {"morgue"});  // Signed by a new CA, as after a CA rotation.
  // The morgue trusts client certificates of the first CA throughout.
  ServiceProcess morgue = Morgue(dir, TlsFlags(certs, "morgue"));
  REQUIRE(morgue.Start().ok());
  const pid_t pid = morgue.pid();
  const auto client_trusting = [&](const std::string& ca) {
    return ClientAs(certs, "patients", ca);
  };
  CHECK(GetAdmission(morgue.address(), client_trusting(certs + "/ca.crt")).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  CHECK(GetAdmission(morgue.address(), client_trusting(renewed + "/ca.crt")).error_code() ==
        grpc::StatusCode::UNAVAILABLE);

  // Renewal as cert-manager or an operator does it: new files renamed over the old ones.
  for (const char* extension : {".key", ".crt"}) {
    const std::string from = renewed + "/morgue" + extension;
    const std::string to = certs + "/morgue" + extension;
    const std::string temporary = to + ".new";
    std::ofstream(temporary) << ReadFile(from);
    REQUIRE(std::rename(temporary.c_str(), to.c_str()) == 0);
  }
  CHECK(Eventually(
      [&] {
        return GetAdmission(morgue.address(), client_trusting(renewed + "/ca.crt")).error_code() ==
               grpc::StatusCode::NOT_FOUND;
      },
      absl::Seconds(10)));
  CHECK(GetAdmission(morgue.address(), client_trusting(certs + "/ca.crt")).error_code() ==
        grpc::StatusCode::UNAVAILABLE);
  CHECK(morgue.pid() == pid);
  CHECK(morgue.Terminate() == 0);
}

TEST_CASE(
    "over mutual TLS a death goes through, and only the patients service may call the "
    "workflow methods",
    "[tls][hospital]") {
  TempDir certs_dir;
  const std::string certs = certs_dir.path() + "/certs";
  MakeCerts(certs, {"patients", "morgue", "appointments", "reception"});
  const std::string ca = certs + "/ca.crt";
  testing_support::HospitalOptions options;
  options.with_metrics = true;
  options.patients_flags = TlsFlags(certs, "patients");
  options.morgue_flags = TlsFlags(certs, "morgue");
  options.morgue_flags.push_back(
      absl::StrCat("--authz_policy=",
                   testing_support::SourcePath("k8s/components/tls/caller-policy-morgue.json")));
  options.appointments_flags = TlsFlags(certs, "appointments");
  options.appointments_flags.push_back(absl::StrCat(
      "--authz_policy=",
      testing_support::SourcePath("k8s/components/tls/caller-policy-appointments.json")));
  // The test is "reception", a client of every service but not the patients service.
  options.client_credentials = ClientAs(certs, "reception", ca);
  Hospital hospital(options);
  hospital.Start();
  hospital.CreatePatient("p-1");
  hospital.Schedule("p-1", absl::Hours(24));
  hospital.CreatePatient("p-2");
  const std::string appointment_of_p2 = hospital.Schedule("p-2", absl::Hours(24)).appointment_id();

  // The patients service reaches both over mutual TLS with its own identity.
  patients_v1::RecordDeathRequest death;
  death.set_patient_id("p-1");
  death.set_cause("stroke");
  *death.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now() - absl::Hours(1));
  patients_v1::RecordDeathResponse recorded;
  const grpc::Status status = hospital.patients().RecordDeath(
      ContextWithTimeout(absl::Seconds(10)).get(), death, &recorded);
  INFO(status.error_message());
  REQUIRE(status.ok());
  morgue_v1::Admission admission;
  morgue_v1::GetAdmissionRequest get;
  get.set_patient_id("p-1");
  REQUIRE(hospital.morgue()
              .GetAdmission(ContextWithTimeout(absl::Seconds(5)).get(), get, &admission)
              .ok());  // Reading is open to any holder of a certificate of the CA.

  // Every workflow method, called by "reception" about p-2 (alive, with an appointment):
  // refused, naming the caller, and nothing changes.
  const auto expect_denied = [](const grpc::Status& refused) {
    INFO(refused.error_message());
    CHECK(refused.error_code() == grpc::StatusCode::PERMISSION_DENIED);
    CHECK_THAT(refused.error_message(), Catch::Contains("spiffe://hospital/reception"));
  };
  const auto timestamp = server_kit::ToProtoTime(absl::Now() - absl::Hours(1));
  {
    morgue_v1::AdmitDeceasedRequest request;
    request.set_patient_id("p-2");
    request.set_workflow_id("w-forged");
    request.set_cause("forged");
    *request.mutable_time_of_death() = timestamp;
    morgue_v1::AdmitDeceasedResponse response;
    expect_denied(hospital.morgue().AdmitDeceased(ContextWithTimeout(absl::Seconds(5)).get(),
                                                  request, &response));
  }
  {
    morgue_v1::CancelAdmissionRequest request;
    request.set_patient_id("p-1");
    request.set_workflow_id(recorded.workflow_id());
    morgue_v1::CancelAdmissionResponse response;
    expect_denied(hospital.morgue().CancelAdmission(ContextWithTimeout(absl::Seconds(5)).get(),
                                                    request, &response));
  }
  {
    morgue_v1::ConfirmAdmissionRequest request;
    request.set_patient_id("p-2");
    request.set_workflow_id("w-forged");
    morgue_v1::ConfirmAdmissionResponse response;
    expect_denied(hospital.morgue().ConfirmAdmission(ContextWithTimeout(absl::Seconds(5)).get(),
                                                     request, &response));
  }
  {
    appointments_v1::CancelPatientAppointmentsRequest request;
    request.set_patient_id("p-2");
    request.set_workflow_id("w-forged");
    appointments_v1::CancelPatientAppointmentsResponse response;
    expect_denied(hospital.appointments().CancelPatientAppointments(
        ContextWithTimeout(absl::Seconds(5)).get(), request, &response));
  }
  {
    appointments_v1::RestorePatientAppointmentsRequest request;
    request.set_patient_id("p-1");
    request.set_workflow_id(recorded.workflow_id());
    appointments_v1::RestorePatientAppointmentsResponse response;
    expect_denied(hospital.appointments().RestorePatientAppointments(
        ContextWithTimeout(absl::Seconds(5)).get(), request, &response));
  }
  // Nothing changed: p-2 has no admission and its appointment stands; p-1's admission stands.
  get.set_patient_id("p-2");
  CHECK(hospital.morgue()
            .GetAdmission(ContextWithTimeout(absl::Seconds(5)).get(), get, &admission)
            .error_code() == grpc::StatusCode::NOT_FOUND);
  appointments_v1::GetAppointmentRequest get_appointment;
  get_appointment.set_appointment_id(appointment_of_p2);
  appointments_v1::Appointment appointment;
  REQUIRE(
      hospital.appointments()
          .GetAppointment(ContextWithTimeout(absl::Seconds(5)).get(), get_appointment, &appointment)
          .ok());
  CHECK(appointment.status() == appointments_v1::SCHEDULED);
  get.set_patient_id("p-1");
  REQUIRE(hospital.morgue()
              .GetAdmission(ContextWithTimeout(absl::Seconds(5)).get(), get, &admission)
              .ok());
  CHECK(admission.status() == morgue_v1::ADMITTED);

  // Each refusal was counted, by the policy's pattern.
  const absl::StatusOr<std::string> morgue_scrape =
      testing_support::ScrapeMetrics(hospital.morgue_process().metrics_port());
  const absl::StatusOr<std::string> appointments_scrape =
      testing_support::ScrapeMetrics(hospital.appointments_process().metrics_port());
  REQUIRE(morgue_scrape.ok());
  REQUIRE(appointments_scrape.ok());
  CHECK(testing_support::SumSamples(*morgue_scrape, "hospital_rpc_access_denied_total") == 3);
  CHECK(testing_support::SumSamples(
            *morgue_scrape, "hospital_rpc_access_denied_total",
            {"method=\"hospital.morgue.v1.MorgueService/AdmitDeceased\""}) == 1);
  CHECK(testing_support::SumSamples(*appointments_scrape, "hospital_rpc_access_denied_total") == 2);
}

TEST_CASE("asynchronously, the services reach the broker over mutual TLS", "[tls][async]") {
  TempDir dir;
  const std::string certs = dir.path() + "/certs";
  MakeCerts(certs, {"patients", "morgue", "appointments", "nats"});
  // The broker requires a client certificate of the same CA.
  testing_support::NatsServer nats(
      dir.path(), "",
      absl::StrCat("tls {\n  cert_file: \"", certs, "/nats.crt\"\n  key_file: \"", certs,
                   "/nats.key\"\n  ca_file: \"", certs, "/ca.crt\"\n  verify: true\n}"));
  REQUIRE(nats.Start().ok());
  const auto nats_tls = [&](const std::string& name) {
    return std::vector<std::string>{absl::StrCat("--nats_tls_ca=", certs, "/ca.crt"),
                                    absl::StrCat("--nats_tls_cert=", certs, "/", name, ".crt"),
                                    absl::StrCat("--nats_tls_key=", certs, "/", name, ".key")};
  };
  testing_support::HospitalOptions options;
  options.nats_url = nats.url();
  options.patients_flags = nats_tls("patients");
  options.morgue_flags = nats_tls("morgue");
  options.appointments_flags = nats_tls("appointments");
  Hospital hospital(options);
  hospital.Start();
  hospital.CreatePatient("p-1");
  patients_v1::RecordDeathRequest death;
  death.set_patient_id("p-1");
  death.set_cause("stroke");
  *death.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now() - absl::Hours(1));
  patients_v1::RecordDeathResponse recorded;
  REQUIRE(hospital.patients()
              .RecordDeath(ContextWithTimeout(absl::Seconds(10)).get(), death, &recorded)
              .ok());
  morgue_v1::GetAdmissionRequest get;
  get.set_patient_id("p-1");
  CHECK(Eventually(
      [&] {
        morgue_v1::Admission admission;
        return hospital.morgue()
            .GetAdmission(ContextWithTimeout(absl::Seconds(2)).get(), get, &admission)
            .ok();
      },
      absl::Seconds(15)));
}

TEST_CASE("a service does not connect to a broker whose certificate lacks the expected name",
          "[tls][async]") {
  TempDir dir;
  const std::string certs = dir.path() + "/certs";
  MakeCerts(certs, {"morgue", "nats"});
  testing_support::NatsServer nats(
      dir.path(), "",
      absl::StrCat("tls {\n  cert_file: \"", certs, "/nats.crt\"\n  key_file: \"", certs,
                   "/nats.key\"\n  ca_file: \"", certs, "/ca.crt\"\n}"));
  REQUIRE(nats.Start().ok());
  const auto morgue_with = [&](const std::string& server_name) {
    return Morgue(dir, {"--death_workflow=async", absl::StrCat("--nats_url=", nats.url()),
                        absl::StrCat("--nats_tls_ca=", certs, "/ca.crt"),
                        absl::StrCat("--nats_tls_server_name=", server_name)});
  };
  const auto connected = [](ServiceProcess& morgue) {
    const absl::StatusOr<std::string> scrape =
        testing_support::ScrapeMetrics(morgue.metrics_port());
    return scrape.ok() && testing_support::SumSamples(*scrape, "hospital_nats_connected") == 1;
  };
  {
    ServiceProcess morgue = morgue_with("nats");
    REQUIRE(morgue.Start().ok());
    CHECK(Eventually([&] { return connected(morgue); }, absl::Seconds(10)));
    // Closing the TLS connection to the broker ends cleanly (libnats's callbacks run during
    // the close; a use after free there once crashed this exit).
    const int code = morgue.Terminate();
    INFO(morgue.log());
    CHECK(code == 0);
  }
  {
    // The certificate is the CA's, but names nats, not appointments: refused.
    ServiceProcess morgue = morgue_with("appointments");
    REQUIRE(morgue.Start().ok());
    absl::SleepFor(absl::Seconds(2));
    CHECK_FALSE(connected(morgue));
    const int code = morgue.Terminate();
    INFO(morgue.log());
    CHECK(code == 0);
  }
}

TEST_CASE("an operator's certificate authorizes admin changes without the token", "[tls]") {
  TempDir dir;
  const std::string certs = dir.path() + "/certs";
  const std::string operators = dir.path() + "/operators";
  MakeCerts(certs, {"morgue", "patients"});
  MakeCerts(operators, {"alice"});
  std::vector<std::string> flags = TlsFlags(certs, "morgue");
  flags.push_back("--fault_admin");
  flags.push_back(absl::StrCat("--admin_tls_ca=", operators, "/ca.crt"));
  ServiceProcess morgue = Morgue(dir, flags);
  REQUIRE(morgue.Start().ok());
  const auto set_fault = [&](const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
    auto stub = faults_v1::FaultInjection::NewStub(
        grpc::CreateChannel(morgue.admin_address(), credentials));
    faults_v1::SetFaultRequest request;
    request.mutable_fault()->set_method("*");
    request.mutable_fault()->mutable_abort()->set_code("UNAVAILABLE");
    request.mutable_fault()->mutable_expire_after()->set_seconds(60);
    faults_v1::Fault stored;
    return stub->SetFault(ContextWithTimeout(absl::Seconds(5)).get(), request, &stored);
  };
  const std::string ca = certs + "/ca.crt";
  // No certificate: the listener lets the caller in (the token would do), but no change.
  CHECK(set_fault(AnonymousClient(ca)).error_code() == grpc::StatusCode::UNAUTHENTICATED);
  // A service's certificate is not an operator's: its CA is not the operators'.
  CHECK(set_fault(ClientAs(certs, "patients", ca)).error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(set_fault(ClientAs(operators, "alice", ca)).ok());
  CHECK(morgue.Terminate() == 0);
  CHECK_THAT(morgue.log(), Catch::Contains("\"event\":\"admin_change\"") &&
                               Catch::Contains("spiffe://hospital/alice"));
}

TEST_CASE("TLS flags that cannot work stop the service at start-up, naming the flag", "[tls]") {
  TempDir dir;
  const std::string certs = dir.path() + "/certs";
  MakeCerts(certs, {"morgue"});
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--tls_cert=" + certs + "/missing.crt", "--tls_key=" + certs + "/morgue.key"},
       "--tls_cert: cannot read"},
      {{"--tls_cert=" + certs + "/morgue.crt", "--tls_key=" + certs + "/morgue.crt"},
       "--tls_key: "},
      {{"--tls_ca=" + certs + "/ca.crt"}, "--tls_cert: needed"},
      {{"--authz_policy=" +
        testing_support::SourcePath("k8s/components/tls/caller-policy-morgue.json")},
       "--authz_policy: callers are known by their client certificates"},
  };
  for (const auto& [flags, message] : cases) {
    INFO(message);
    std::remove((dir.path() + "/morgue.log").c_str());
    ServiceProcess morgue = Morgue(dir, flags);
    const absl::Status started = morgue.Start();
    CHECK_FALSE(started.ok());
    CHECK_THAT(std::string(started.message()), Catch::Contains(message));
  }
}

}  // namespace
