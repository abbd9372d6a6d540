// A service past its thread bound: the calls gRPC refuses for lack of threads are answered with a
// retryable RESOURCE_EXHAUSTED and the server's pushback (never as unparsable), counted by
// reason, and retried by the patients service's resilient calls to its downstreams.
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/create_channel.h>
#include <prometheus/registry.h>

#include <catch2/catch.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/sync.h"
#include "base/testing/fake_environment.h"
#include "server_kit/refused_calls.h"
#include "support/hospital_fixture.h"

namespace {

using testing_support::ContextWithTimeout;
using testing_support::FaultAdmin;
using testing_support::Hospital;
using testing_support::Metric;
namespace faults_v1 = hospital::faults::v1;
namespace morgue_v1 = hospital::morgue::v1;
namespace patients_v1 = hospital::patients::v1;

faults_v1::Fault Delay(const std::string& method, absl::Duration fixed) {
  faults_v1::Fault fault;
  fault.set_method(method);
  fault.mutable_delay()->mutable_fixed()->set_seconds(absl::ToInt64Seconds(fixed));
  fault.mutable_delay()->mutable_fixed()->set_nanos(
      static_cast<int>(absl::ToInt64Nanoseconds(fixed % absl::Seconds(1))));
  return fault;
}

// The server's pushback in a finished call's trailers, in ms; -1 when there is none.
long PushbackMs(const grpc::ClientContext& context) {
  const auto& trailers = context.GetServerTrailingMetadata();
  const auto found = trailers.find("grpc-retry-pushback-ms");
  if (found == trailers.end()) return -1;
  long value = -1;
  if (!absl::SimpleAtoi(absl::string_view(found->second.data(), found->second.size()), &value)) {
    return -2;
  }
  return value;
}

TEST_CASE("each refusal gRPC makes before a handler is explained by what gRPC reports",
          "[overload]") {
  base::testing::FakeEnvironment env;
  prometheus::Registry registry;
  server_kit::RefusedCallInterceptorFactory factory(
      {"public", 8, absl::Milliseconds(40)}, server_kit::RefusalsFamily(registry), env.random());
  const auto refusals = [&](const std::string& reason) {
    double total = 0;
    for (const auto& family : registry.Collect()) {
      for (const auto& metric : family.metric) {
        bool matches = false;
        for (const auto& label : metric.label) {
          if (label.name == "reason" && label.value == reason) matches = true;
        }
        if (matches) total += metric.counter.value;
      }
    }
    return total;
  };
  const char kMethod[] = "/hospital.patients.v1.PatientsService/CreatePatient";
  std::string pushback;

  // No thread was free: busy, retryable after a pushback spread over [20, 60) ms.
  env.random().Push(0.0);
  grpc::Status answer = factory.Explain(
      grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "Server Threadpool Exhausted"), kMethod,
      pushback);
  CHECK(answer.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK_THAT(answer.error_message(), Catch::StartsWith("server busy: all 8 threads"));
  CHECK(pushback == "20");
  env.random().Push(0.999);
  pushback.clear();
  factory.Explain(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "Server Threadpool Exhausted"),
                  kMethod, pushback);
  CHECK(pushback == "60");
  CHECK(refusals("threads_exhausted") == 2);

  // The parser refused the bytes (proto3: INTERNAL with an empty message).
  pushback.clear();
  answer = factory.Explain(grpc::Status(grpc::StatusCode::INTERNAL, ""), kMethod, pushback);
  CHECK(answer.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(answer.error_message(),
             Catch::StartsWith("request: cannot be parsed as "
                               "hospital.patients.v1.CreatePatientRequest"));
  CHECK(pushback.empty());
  CHECK(refusals("unparsable") == 1);

  // No message arrived at all.
  for (const char* message : {"No payload", "Couldn't initialize byte buffer reader"}) {
    answer = factory.Explain(grpc::Status(grpc::StatusCode::INTERNAL, message), kMethod, pushback);
    CHECK(answer.error_code() == grpc::StatusCode::UNAVAILABLE);
  }
  CHECK(refusals("no_message") == 2);

  // Any other refusal passes unchanged: a RESOURCE_EXHAUSTED of another cause is not "busy",
  // and nothing but INTERNAL is taken for a parse failure.
  for (const grpc::Status& original :
       {grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "Received message larger than max"),
        grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"),
        grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "")}) {
    answer = factory.Explain(original, kMethod, pushback);
    CHECK(answer.error_code() == original.error_code());
    CHECK(answer.error_message() == original.error_message());
  }
  CHECK(pushback.empty());
  CHECK(refusals("other") == 3);
  CHECK(refusals("unparsable") == 1);
}

TEST_CASE("a burst beyond the thread bound is refused as busy with pushback, never as unparsable",
          "[overload][hospital]") {
  testing_support::HospitalOptions options;
  options.admin_token = "s3cret";
  options.with_metrics = true;
  options.patients_flags = {"--max_threads=8"};
  Hospital hospital(options);
  hospital.Start();
  // Each call that gets a thread holds it for 300 ms, so the burst cannot be served in time by
  // eight threads whatever the machine's speed: most calls are refused.
  FaultAdmin admin(hospital.patients_process().admin_address());
  REQUIRE(
      admin
          .Set(Delay("hospital.patients.v1.PatientsService/CreatePatient", absl::Milliseconds(300)))
          .ok());

  constexpr int kCalls = 400;
  struct Call {
    grpc::ClientContext context;
    patients_v1::CreatePatientRequest request;
    patients_v1::Patient response;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Call>> calls;
  base::Mutex mutex;
  base::CondVar finished_changed;
  int finished = 0;
  for (int i = 0; i < kCalls; ++i) {
    Call& call = *calls.emplace_back(std::make_unique<Call>());
    call.context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    call.request.set_patient_id(absl::StrCat("p-", i));
    call.request.set_given_name("Ada");
    call.request.set_family_name("Lovelace");
    call.request.set_date_of_birth("1990-12-10");
  }
  for (auto& call : calls) {
    hospital.patients().async()->CreatePatient(&call->context, &call->request, &call->response,
                                               [&, c = call.get()](grpc::Status status) {
                                                 base::MutexLock lock(&mutex);
                                                 c->status = std::move(status);
                                                 ++finished;
                                                 finished_changed.SignalAll();
                                               });
  }
  {
    base::MutexLock lock(&mutex);
    while (finished < kCalls) finished_changed.Wait(&mutex);
  }

  int ok = 0;
  int busy = 0;
  std::vector<std::string> refused_ids;
  for (const auto& call : calls) {
    INFO(call->request.patient_id()
         << ": " << call->status.error_code() << " " << call->status.error_message());
    if (call->status.ok()) {
      ++ok;
      continue;
    }
    REQUIRE(call->status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
    CHECK_THAT(call->status.error_message(), Catch::StartsWith("server busy"));
    // --overload_pushback's default, 50 ms, spread over [25, 75].
    const long pushback = PushbackMs(call->context);
    CHECK(pushback >= 25);
    CHECK(pushback <= 75);
    ++busy;
    refused_ids.push_back(call->request.patient_id());
  }
  CHECK(ok > 0);
  CHECK(busy > 0);
  CHECK(ok + busy == kCalls);
  const auto& patients = hospital.patients_process();
  CHECK(Metric(patients, "hospital_rpc_refusals_total",
               {"listener=\"public\"", "reason=\"threads_exhausted\""}) == busy);
  CHECK(Metric(patients, "hospital_rpc_refusals_total", {"reason=\"unparsable\""}) == 0);
  CHECK(Metric(patients, "grpc_server_handled_total",
               {"grpc_method=\"CreatePatient\"", "grpc_code=\"RESOURCE_EXHAUSTED\""}) == busy);
  // Faults are for calls a handler runs: the refused ones were answered at once, not delayed.
  CHECK(Metric(patients, "hospital_faults_injected_total", {"kind=\"delay\""}) == ok);

  // A refusal changed nothing, and the same request succeeds once the service has threads.
  REQUIRE(admin.Clear().ok());
  for (const std::string& id : refused_ids) {
    patients_v1::GetPatientRequest get;
    get.set_patient_id(id);
    patients_v1::Patient patient;
    REQUIRE(hospital.patients()
                .GetPatient(ContextWithTimeout(absl::Seconds(5)).get(), get, &patient)
                .error_code() == grpc::StatusCode::NOT_FOUND);
  }
  hospital.CreatePatient(refused_ids.front());
}

// Retries the morgue's RESOURCE_EXHAUSTED (only ever retried with the server's pushback).
constexpr char kRetryBusyPolicy[] = R"({
  "defaultTarget": {
    "methodConfig": [{"name": [{}], "timeout": "5s",
      "retryPolicy": {"maxAttempts": 10, "initialBackoff": "0.02s", "maxBackoff": "0.05s",
                      "backoffMultiplier": 2,
                      "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]}}],
    "retryBudget": {"ratio": 0.2, "minRetriesPerSecond": 5, "maxTokens": 20}
  }
})";

TEST_CASE("the patients service retries a busy morgue after the pushback it was given",
          "[overload][hospital]") {
  testing_support::HospitalOptions options;
  options.admin_token = "s3cret";
  options.with_metrics = true;
  options.policy_json = kRetryBusyPolicy;
  // Four threads: three serve while one polls; a call that finds all three busy is refused.
  options.morgue_flags = {"--max_threads=4", "--overload_pushback=150ms"};
  Hospital hospital(options);
  hospital.Start();
  hospital.CreatePatient("p-1");
  FaultAdmin admin(hospital.morgue_process().admin_address());
  REQUIRE(admin.Set(Delay("hospital.morgue.v1.MorgueService/GetAdmission", absl::Seconds(1))).ok());

  // The test's own reads take every serving thread of the morgue for a second.
  auto morgue = morgue_v1::MorgueService::NewStub(
      grpc::CreateChannel(hospital.morgue_process().address(), grpc::InsecureChannelCredentials()));
  constexpr int kReads = 8;
  struct Read {
    grpc::ClientContext context;
    morgue_v1::GetAdmissionRequest request;
    morgue_v1::Admission response;
  };
  std::vector<std::unique_ptr<Read>> reads;
  std::atomic<int> reads_done{0};
  std::atomic<int> reads_refused{0};
  for (int i = 0; i < kReads; ++i) {
    Read& read = *reads.emplace_back(std::make_unique<Read>());
    read.context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    read.request.set_admission_id("a-none");
    morgue->async()->GetAdmission(
        &read.context, &read.request, &read.response, [&](grpc::Status status) {
          if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
            reads_refused.fetch_add(1);
          }
          reads_done.fetch_add(1);
        });
  }
  // Some reads were refused: every serving thread is held by the others.
  REQUIRE(testing_support::Eventually([&] { return reads_refused.load() > 0; }, absl::Seconds(2)));
  const double refused_before = Metric(hospital.morgue_process(), "hospital_rpc_refusals_total",
                                       {"reason=\"threads_exhausted\""});

  patients_v1::RecordDeathRequest death;
  death.set_patient_id("p-1");
  death.set_cause("stroke");
  *death.mutable_time_of_death() = google::protobuf::Timestamp();
  death.mutable_time_of_death()->set_seconds(absl::ToUnixSeconds(absl::Now()) - 60);
  patients_v1::RecordDeathResponse recorded;
  const absl::Time sent = absl::Now();
  const grpc::Status status = hospital.patients().RecordDeath(
      ContextWithTimeout(absl::Seconds(10)).get(), death, &recorded);
  INFO(status.error_code() << " " << status.error_message());
  REQUIRE(status.ok());
  CHECK(recorded.downstream_state() == patients_v1::DOWNSTREAM_APPLIED);
  // Held back until the reads let go of the threads, by retries at the morgue's pushback.
  CHECK(absl::Now() - sent > absl::Milliseconds(100));
  CHECK(Metric(hospital.morgue_process(), "hospital_rpc_refusals_total",
               {"reason=\"threads_exhausted\""}) > refused_before);
  CHECK(Metric(hospital.patients_process(), "resilience_attempts_total",
               {"method=\"/hospital.morgue.v1.MorgueService/AdmitDeceased\""}) >= 2);
  CHECK(Metric(hospital.patients_process(), "resilience_retries_total", {"target=\"morgue\""}) >=
        1);
  REQUIRE(
      testing_support::Eventually([&] { return reads_done.load() == kReads; }, absl::Seconds(10)));
}

}  // namespace
