// The monitoring in k8s/monitoring names only metrics the services really export, and a live
// scrape of each service passes `promtool check metrics`.

#include <cstdio>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <grpcpp/create_channel.h>
#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "hospital/faults/v1/faults.grpc.pb.h"
#include "resilience/v1/admin.grpc.pb.h"
#include "server_kit/rpc_support.h"
#include "support/hospital_fixture.h"
#include "testing_support/nats_server.h"
#include "testing_support/service_process.h"

namespace {

using testing_support::ContextWithTimeout;
using testing_support::Hospital;

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// Names of the series in a scrape.
std::set<std::string> SeriesNames(const std::string& scrape) {
  std::set<std::string> names;
  std::istringstream lines(scrape);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    names.insert(line.substr(0, line.find_first_of("{ ")));
  }
  return names;
}

// Metric names the monitoring files use (our prefixes only).
std::set<std::string> ReferencedNames(const std::string& text) {
  static const std::regex kName(R"(\b((?:hospital|resilience|grpc_server)_[a-z_]+)\b)");
  std::set<std::string> names;
  for (std::sregex_iterator it(text.begin(), text.end(), kName), end; it != end; ++it) {
    names.insert((*it)[1]);
  }
  return names;
}

// Writes `scrape` to `path` and checks that `promtool check metrics` accepts it.
void CheckWithPromtool(const std::string& path, const std::string& scrape) {
  std::ofstream(path) << scrape;
  const std::string command = absl::StrCat("promtool check metrics < ", path, " 2>&1");
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string output;
  char buffer[512];
  while (fgets(buffer, sizeof(buffer), pipe) != nullptr) output += buffer;
  const int status = pclose(pipe);
  INFO("promtool check metrics on " << path << ":\n" << output);
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("alerts and dashboard name only exported metrics, and scrapes pass promtool",
          "[monitoring]") {
  testing_support::HospitalOptions options;
  options.with_metrics = true;
  options.admin_token = "s3cret";
  Hospital hospital(options);
  hospital.Start();
  // Traffic that creates every labelled series: a death, a failed one, a fault.
  hospital.CreatePatient("p-1");
  hospital.CreatePatient("p-2");
  hospital::patients::v1::RecordDeathRequest death;
  death.set_patient_id("p-1");
  death.set_cause("stroke");
  *death.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now() - absl::Hours(1));
  hospital::patients::v1::RecordDeathResponse recorded;
  REQUIRE(hospital.patients()
              .RecordDeath(ContextWithTimeout(absl::Seconds(10)).get(), death, &recorded)
              .ok());
  {
    auto admin = hospital::faults::v1::FaultInjection::NewStub(grpc::CreateChannel(
        hospital.morgue_process().admin_address(), grpc::InsecureChannelCredentials()));
    auto context = ContextWithTimeout(absl::Seconds(5));
    context->AddMetadata("authorization", "Bearer s3cret");
    hospital::faults::v1::SetFaultRequest request;
    request.mutable_fault()->set_method("*");
    request.mutable_fault()->mutable_abort()->set_code("UNAVAILABLE");
    hospital::faults::v1::Fault fault;
    REQUIRE(admin->SetFault(context.get(), request, &fault).ok());
  }
  death.set_patient_id("p-2");
  CHECK_FALSE(hospital.patients()
                  .RecordDeath(ContextWithTimeout(absl::Seconds(10)).get(), death, &recorded)
                  .ok());
  {
    // A breaker transition, so that its counter has a series.
    auto admin = resilience::v1::ResilienceAdmin::NewStub(grpc::CreateChannel(
        hospital.patients_process().admin_address(), grpc::InsecureChannelCredentials()));
    resilience::v1::CircuitBreakerRequest request;
    request.set_target("morgue");
    resilience::v1::CircuitBreakerStatus status;
    auto context = ContextWithTimeout(absl::Seconds(5));
    context->AddMetadata("authorization", "Bearer s3cret");
    REQUIRE(admin->ForceOpenCircuitBreaker(context.get(), request, &status).ok());
  }
  CHECK_FALSE(hospital.patients()
                  .RecordDeath(ContextWithTimeout(absl::Seconds(10)).get(), death, &recorded)
                  .ok());

  std::set<std::string> exported;
  const testing_support::TempDir dir;
  for (testing_support::ServiceProcess* process :
       {&hospital.patients_process(), &hospital.morgue_process(),
        &hospital.appointments_process()}) {
    const absl::StatusOr<std::string> scraped =
        testing_support::ScrapeMetrics(process->metrics_port());
    REQUIRE(scraped.ok());
    const std::string& scrape = *scraped;
    const std::set<std::string> names = SeriesNames(scrape);
    exported.insert(names.begin(), names.end());
    // Every service has committed something (its migrations at least): group commit is counted.
    static const std::regex kUnits(
        R"(\nhospital_db_units_committed_total\{engine="sqlite"\} ([0-9.e+]+)\n)");
    std::smatch units;
    REQUIRE(std::regex_search(scrape, units, kUnits));
    CHECK(std::stod(units[1]) >= 1);
    for (const char* name :
         {"hospital_db_transactions_total", "hospital_db_transaction_retries_total",
          "hospital_db_connection_errors_total", "hospital_db_pool_timeouts_total",
          "hospital_db_pool_size", "hospital_db_connections_open", "hospital_db_connections_in_use",
          "hospital_db_waiting"}) {
      CHECK(names.count(name) == 1);
    }
    CheckWithPromtool(dir.path() + "/scrape-" + std::to_string(process->metrics_port()), scrape);
  }

  {
    // The asynchronous workflow's metrics: the same services against a real nats-server, after
    // one death has travelled as an event.
    const testing_support::TempDir broker_dir;
    testing_support::NatsServer broker(broker_dir.path());
    REQUIRE(broker.Start().ok());
    testing_support::HospitalOptions async_options;
    async_options.with_metrics = true;
    async_options.nats_url = broker.url();
    Hospital async_hospital(async_options);
    async_hospital.Start();
    async_hospital.CreatePatient("p-1");
    death.set_patient_id("p-1");
    REQUIRE(async_hospital.patients()
                .RecordDeath(ContextWithTimeout(absl::Seconds(10)).get(), death, &recorded)
                .ok());
    REQUIRE(testing_support::Eventually(
        [&] {
          const absl::StatusOr<std::string> scrape =
              testing_support::ScrapeMetrics(async_hospital.morgue_process().metrics_port());
          return scrape.ok() &&
                 testing_support::SumSamples(*scrape, "hospital_events_consumed_total") == 1;
        },
        absl::Seconds(10)));
    for (testing_support::ServiceProcess* process :
         {&async_hospital.patients_process(), &async_hospital.morgue_process(),
          &async_hospital.appointments_process()}) {
      const absl::StatusOr<std::string> scraped =
          testing_support::ScrapeMetrics(process->metrics_port());
      REQUIRE(scraped.ok());
      const std::set<std::string> names = SeriesNames(*scraped);
      exported.insert(names.begin(), names.end());
      CheckWithPromtool(dir.path() + "/async-scrape-" + std::to_string(process->metrics_port()),
                        *scraped);
    }
  }

  const std::string files =
      ReadFile(absl::StrCat(HOSPITAL_SOURCE_DIR, "/k8s/monitoring/prometheus-rule.yaml")) +
      ReadFile(absl::StrCat(HOSPITAL_SOURCE_DIR, "/k8s/monitoring/dashboard.json"));
  const std::set<std::string> referenced = ReferencedNames(files);
  REQUIRE(referenced.size() >= 10);
  for (const std::string& name : referenced) {
    INFO("metric named in k8s/monitoring: " << name);
    CHECK(exported.count(name) == 1);
  }
}

}  // namespace
