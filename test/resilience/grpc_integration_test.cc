// The pipeline against a real gRPC server on loopback that fails, stalls or pushes back as each
// request asks.
#include <atomic>
#include <optional>
#include <thread>
#include <vector>

#include <grpc/grpc.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/server_builder.h>
#include <catch2/catch.hpp>

#include "echo/v1/echo.grpc.pb.h"
#include "resilience/admin_service.h"
#include "resilience/grpc_call.h"
#include "testing_support/echo_server.h"
#include "testing_support/metrics_reader.h"

namespace resilience {
namespace {

using echo::v1::EchoRequest;
using echo::v1::EchoResponse;
using echo::v1::EchoService;

constexpr char kEchoMethod[] = "/echo.v1.EchoService/Echo";

struct Fixture {
  explicit Fixture(const std::string& policy_json,
                   testing_support::EchoServer* shared_server = nullptr) {
    absl::StatusOr<Policy> policy = ParsePolicyJson(policy_json);
    INFO(policy.status().ToString());
    REQUIRE(policy.ok());
    targets.emplace(*std::move(policy), env.environment(), registry);
    server = shared_server;
    if (server == nullptr) {
      own_server.emplace();
      server = &*own_server;
    }
    channel = CreateChannel(server->address());
    stub = EchoService::NewStub(channel);
    method = &targets->GetTarget("echo").Method(kEchoMethod);
    sender = [stub = stub.get()](grpc::ClientContext* context, const EchoRequest* request,
                                 EchoResponse* response, std::function<void(grpc::Status)> done) {
      stub->async()->Echo(context, request, response, std::move(done));
    };
  }

  absl::Status Call(const EchoRequest& request, EchoResponse* response = nullptr,
                    CallOptions options = {}) {
    EchoResponse ignored;
    return CallUnaryBlocking<EchoRequest, EchoResponse>(
        *method, sender, request, response ? response : &ignored, std::move(options));
  }

  base::RealEnvironment env;
  prometheus::Registry registry;
  std::optional<TargetRegistry> targets;
  std::optional<testing_support::EchoServer> own_server;
  testing_support::EchoServer* server = nullptr;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<EchoService::Stub> stub;
  GuardedMethod* method = nullptr;
  UnarySender<EchoRequest, EchoResponse> sender;
};

EchoRequest Failing(grpc::StatusCode code, const std::string& pushback = "") {
  EchoRequest request;
  request.set_fail_with_code(static_cast<int>(code));
  request.set_pushback_ms(pushback);
  return request;
}

constexpr char kRetryPolicy[] = R"({"defaultTarget": {"methodConfig": [{"timeout": "5s",
    "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.001s", "maxBackoff": "0.002s",
                    "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]}}]}})";

TEST_CASE("a successful call returns the response", "[grpc]") {
  Fixture f(kRetryPolicy);
  EchoRequest request;
  request.set_message("hello");
  EchoResponse response;
  REQUIRE(f.Call(request, &response).ok());
  CHECK(response.message() == "hello");
  CHECK(f.server->requests_received() == 1);
}

TEST_CASE("retries reach the server exactly max_attempts times: gRPC's own retries are off",
          "[grpc][retry]") {
  Fixture f(kRetryPolicy);
  const absl::Status status = f.Call(Failing(grpc::StatusCode::UNAVAILABLE));
  CHECK(status.code() == absl::StatusCode::kUnavailable);
  CHECK(status.message() == "failure requested");
  CHECK(f.server->requests_received() == 3);
}

TEST_CASE("server pushback: a valid value is honoured, garbage stops retries", "[grpc][pushback]") {
  Fixture f(kRetryPolicy);
  const absl::Time start = absl::Now();
  CHECK_FALSE(f.Call(Failing(grpc::StatusCode::RESOURCE_EXHAUSTED, "30")).ok());
  CHECK(f.server->requests_received() == 3);
  CHECK(absl::Now() - start >= absl::Milliseconds(60));  // Two pushed-back waits of 30 ms.

  Fixture g(kRetryPolicy);
  CHECK_FALSE(g.Call(Failing(grpc::StatusCode::UNAVAILABLE, "later")).ok());
  CHECK(g.server->requests_received() == 1);
}

TEST_CASE("a stalled server is cut off at the deadline", "[grpc][deadline]") {
  Fixture f(R"({"defaultTarget": {"methodConfig": [{"timeout": "0.1s"}]}})");
  EchoRequest request;
  request.set_delay_ms(5000);
  const absl::Time start = absl::Now();
  const absl::Status status = f.Call(request);
  const absl::Duration elapsed = absl::Now() - start;
  CHECK(status.code() == absl::StatusCode::kDeadlineExceeded);
  // gRPC core keeps deadlines in whole milliseconds and measures them from a cached "now", so
  // its timer may fire up to a couple of milliseconds before 100 ms measured here (CI saw 99.6).
  CHECK(elapsed >= absl::Milliseconds(97));
  CHECK(elapsed < absl::Seconds(2));
  CHECK(testing_support::MetricValue(*f.targets->call_metrics(), "resilience_calls_total",
                                     {{"outcome", "deadline_exceeded"}}) == 1);
}

TEST_CASE("the parent deadline bounds the outgoing call", "[grpc][deadline]") {
  Fixture f(
      R"({"defaultTarget": {"methodConfig": [{"timeout": "10s", "deadlineMargin": "0.02s"}]}})");
  EchoRequest request;
  request.set_delay_ms(5000);
  CallOptions options;
  options.parent_deadline = absl::Now() + absl::Milliseconds(120);
  const absl::Time start = absl::Now();
  CHECK(f.Call(request, nullptr, options).code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(absl::Now() - start < absl::Milliseconds(1000));
}

TEST_CASE("metadata such as an idempotency key is sent with every attempt", "[grpc]") {
  Fixture f(kRetryPolicy);
  CallOptions options;
  options.metadata = {{"idempotency-key", "death-42"}};
  CHECK_FALSE(f.Call(Failing(grpc::StatusCode::UNAVAILABLE), nullptr, options).ok());
  CHECK(f.server->MetadataSeen("idempotency-key") ==
        std::vector<std::string>{"death-42", "death-42", "death-42"});
}

TEST_CASE("each retry tells the server how many attempts came before it", "[grpc][retry]") {
  Fixture f(kRetryPolicy);
  CHECK_FALSE(f.Call(Failing(grpc::StatusCode::UNAVAILABLE)).ok());
  REQUIRE(f.server->requests_received() == 3);
  CHECK(f.server->MetadataSeen(kPreviousAttemptsMetadataKey) ==
        std::vector<std::string>{"1", "2"});  // None on the first attempt (gRFC A6).
}

TEST_CASE("a hedge answers for a stalled first attempt, which is cancelled", "[grpc][hedging]") {
  Fixture f(R"({"defaultTarget": {"methodConfig": [{"timeout": "5s",
      "hedgingPolicy": {"maxAttempts": 2, "hedgingDelay": "0.02s"}}]}})");
  EchoRequest request;
  request.set_message("hedged");
  request.set_delay_ms(3000);
  request.set_delay_first_attempt_only(true);
  CallOptions options;
  options.metadata = {{"idempotency-key", "death-7"}};
  EchoResponse response;
  const absl::Time start = absl::Now();
  REQUIRE(f.Call(request, &response, options).ok());
  CHECK(absl::Now() - start < absl::Seconds(2));  // Not the first attempt's 3 s.
  CHECK(response.message() == "hedged");
  CHECK(f.server->requests_received() == 2);
  CHECK(f.server->MetadataSeen("idempotency-key") ==
        std::vector<std::string>{"death-7", "death-7"});
  CHECK(f.server->MetadataSeen(kPreviousAttemptsMetadataKey) == std::vector<std::string>{"1"});
  // CallUnaryBlocking returned after the loser ended: the server saw it cancelled.
  const absl::Time give_up = absl::Now() + absl::Seconds(2);
  while (f.server->requests_cancelled() < 1 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  CHECK(f.server->requests_cancelled() == 1);
  CHECK(testing_support::MetricValue(*f.targets->call_metrics(), "resilience_hedges_total", {}) ==
        1);
}

TEST_CASE("asynchronous hedged calls deliver their result before the loser has ended",
          "[grpc][hedging]") {
  Fixture f(R"({"defaultTarget": {"methodConfig": [{"timeout": "5s",
      "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0.01s"}}]}})");
  EchoRequest request;
  request.set_delay_ms(2000);
  request.set_delay_first_attempt_only(true);
  constexpr int kCalls = 4;  // Each stalled first attempt holds one of the server's threads.
  std::atomic<int> ok{0};
  base::Notification all_done;
  std::atomic<int> done{0};
  const absl::Time start = absl::Now();
  for (int i = 0; i < kCalls; ++i) {
    CallUnary<EchoRequest, EchoResponse>(*f.method, f.sender, request, {},
                                         [&](const absl::Status& status, EchoResponse&) {
                                           if (status.ok()) ok.fetch_add(1);
                                           if (done.fetch_add(1) + 1 == kCalls) all_done.Notify();
                                         });
  }
  REQUIRE(all_done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  CHECK(absl::Now() - start < absl::Seconds(2));
  CHECK(ok.load() == kCalls);
  f.targets->Shutdown();  // Waits for every loser to end.
  const absl::Time give_up = absl::Now() + absl::Seconds(2);
  while (f.server->requests_cancelled() < kCalls && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  CHECK(f.server->requests_cancelled() == kCalls);
}

constexpr char kJudgedPolicy[] = R"({"defaultTarget": {
    "circuitBreaker": {"slidingWindowSize": 1, "minimumNumberOfCalls": 1},
    "methodConfig": [{"timeout": "10s", "retryPolicy": {"maxAttempts": 3,
        "initialBackoff": "0.001s", "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"]}}]}})";

TEST_CASE("cancelling the caller's request cancels the call in flight at once", "[grpc][cancel]") {
  Fixture f(kJudgedPolicy);
  EchoRequest stalled;
  stalled.set_delay_ms(5000);
  Cancellation cancellation;
  CallOptions options;
  options.cancellation = &cancellation;
  std::thread client_goes_away([&cancellation] {
    absl::SleepFor(absl::Milliseconds(100));
    cancellation.Cancel();
  });
  const absl::Time start = absl::Now();
  const absl::Status status = f.Call(stalled, nullptr, options);
  const absl::Duration elapsed = absl::Now() - start;
  client_goes_away.join();
  CHECK(status.code() == absl::StatusCode::kCancelled);
  CHECK(elapsed < absl::Seconds(2));
  CHECK(f.server->requests_received() == 1);  // CANCELLED is retryable here; not this one.
  CHECK(testing_support::MetricValue(*f.targets->call_metrics(), "resilience_calls_total",
                                     {{"outcome", "cancelled"}}) == 1);
  // The breaker (one failure opens it) did not count the caller's cancellation.
  CHECK(f.targets->GetTarget("echo").breaker().state() == BreakerState::kClosed);
}

TEST_CASE("a call made after its caller was cancelled is never sent", "[grpc][cancel]") {
  Fixture f(kJudgedPolicy);
  Cancellation cancellation;
  cancellation.Cancel();
  CallOptions options;
  options.cancellation = &cancellation;
  base::Notification done;
  absl::Status result;
  CallUnary<EchoRequest, EchoResponse>(*f.method, f.sender, EchoRequest(), options,
                                       [&](const absl::Status& status, EchoResponse&) {
                                         result = status;
                                         done.Notify();
                                       });
  REQUIRE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  CHECK(result.code() == absl::StatusCode::kCancelled);
  CHECK(f.server->requests_received() == 0);
}

TEST_CASE("cancelling asynchronous calls races their completion safely", "[grpc][cancel]") {
  // Many calls, each cancelled at a different moment of its life (before, during, after its
  // attempt), from another thread; every completion must run exactly once. Run under TSan and
  // ASan in CI.
  Fixture f(kJudgedPolicy);
  constexpr int kCalls = 200;
  std::vector<std::unique_ptr<Cancellation>> cancellations;
  for (int i = 0; i < kCalls; ++i) cancellations.push_back(std::make_unique<Cancellation>());
  std::atomic<int> completions{0};
  base::Notification all_done;
  for (int i = 0; i < kCalls; ++i) {
    EchoRequest request;
    request.set_delay_ms(i % 3);
    CallOptions options;
    options.cancellation = cancellations[static_cast<std::size_t>(i)].get();
    CallUnary<EchoRequest, EchoResponse>(
        *f.method, f.sender, request, options, [&](const absl::Status& status, EchoResponse&) {
          CHECK((status.ok() || status.code() == absl::StatusCode::kCancelled));
          if (completions.fetch_add(1) + 1 == kCalls) {
            all_done.Notify();
          }
        });
    if (i % 2 == 0) cancellations[static_cast<std::size_t>(i)]->Cancel();
  }
  std::thread late([&] {
    for (int i = 1; i < kCalls; i += 2) cancellations[static_cast<std::size_t>(i)]->Cancel();
  });
  REQUIRE(all_done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  late.join();
  CHECK(completions.load() == kCalls);
  CHECK(f.targets->GetTarget("echo").breaker().state() == BreakerState::kClosed);
}

TEST_CASE("two calls made asynchronously run concurrently", "[grpc][async]") {
  Fixture f(kRetryPolicy);
  EchoRequest slow;
  slow.set_delay_ms(200);
  slow.set_message("slow");
  std::atomic<int> finished{0};
  base::Notification both;
  const absl::Time start = absl::Now();
  for (int i = 0; i < 2; ++i) {
    CallUnary<EchoRequest, EchoResponse>(*f.method, f.sender, slow, {},
                                         [&](const absl::Status& status, EchoResponse& response) {
                                           CHECK(status.ok());
                                           CHECK(response.message() == "slow");
                                           if (finished.fetch_add(1) == 1) both.Notify();
                                         });
  }
  REQUIRE(both.WaitForNotificationWithTimeout(absl::Seconds(10)));
  // The slower of the two, not their sum.
  CHECK(absl::Now() - start < absl::Milliseconds(390));
}

TEST_CASE("a restarted server is reached again within the reconnect backoff cap",
          "[grpc][reconnect]") {
  // With gRPC's default schedule (1 s, growing 1.6 times to 120 s) a channel whose server was
  // gone for 2.5 s would next try to connect about 2.7 s after the server came back.
  std::string address;
  {
    testing_support::EchoServer first;
    address = first.address();
  }
  std::optional<testing_support::EchoServer> server(std::in_place, nullptr, address);
  Fixture f(R"({"defaultTarget": {"methodConfig": [{"timeout": "1s"}]}})", &*server);
  EchoRequest request;
  REQUIRE(f.Call(request).ok());
  server.reset();
  const absl::Time down_until = absl::Now() + absl::Milliseconds(2500);
  while (absl::Now() < down_until) {  // Failed connection attempts grow the backoff.
    CHECK(f.Call(request).code() == absl::StatusCode::kUnavailable);
    absl::SleepFor(absl::Milliseconds(50));
  }
  server.emplace(nullptr, address);
  const absl::Time restarted = absl::Now();
  while (!f.Call(request).ok() && absl::Now() - restarted < absl::Seconds(5)) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  CHECK(absl::Now() - restarted < kMaxReconnectBackoff + absl::Milliseconds(500));
}

TEST_CASE("a half-open probe finds the channel reconnected", "[grpc][reconnect][breaker]") {
  // The channel is told to wait 10 s between connection attempts: without the reset before the
  // breaker's wait ends, the probe would fail on a channel still waiting, and the breaker would
  // reopen.
  std::string address;
  {
    testing_support::EchoServer first;
    address = first.address();
  }
  std::optional<testing_support::EchoServer> server(std::in_place, nullptr, address);
  base::RealEnvironment env;
  prometheus::Registry registry;
  TargetRegistry targets(*ParsePolicyJson(R"({"defaultTarget": {
      "circuitBreaker": {"slidingWindowSize": 2, "minimumNumberOfCalls": 2,
                         "failureRateThreshold": 50, "waitDurationInOpenState": "0.3s",
                         "permittedNumberOfCallsInHalfOpenState": 1},
      "methodConfig": [{"timeout": "1s"}]}})"),
                         env.environment(), registry);
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 10000);
  arguments.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 10000);
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 10000);
  auto channel = CreateChannel(address, grpc::InsecureChannelCredentials(), arguments);
  Target& target = targets.GetTarget("echo");
  ReconnectBeforeProbes(target, channel);
  auto stub = EchoService::NewStub(channel);
  UnarySender<EchoRequest, EchoResponse> sender =
      [s = stub.get()](grpc::ClientContext* context, const EchoRequest* request,
                       EchoResponse* response, std::function<void(grpc::Status)> done) {
        s->async()->Echo(context, request, response, std::move(done));
      };
  GuardedMethod& method = target.Method(kEchoMethod);
  const auto call = [&] {
    EchoResponse response;
    return CallUnaryBlocking<EchoRequest, EchoResponse>(method, sender, EchoRequest(), &response);
  };
  REQUIRE(call().ok());
  server.reset();
  CHECK_FALSE(call().ok());
  CHECK_FALSE(call().ok());
  REQUIRE(target.breaker().state() == BreakerState::kOpen);
  server.emplace(nullptr, address);
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (target.breaker().IsRejecting(absl::Now()) && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));  // Polling for the end of the breaker's wait.
  }
  const absl::Status probe = call();
  INFO(probe.message());
  CHECK(probe.ok());
  CHECK(target.breaker().state() == BreakerState::kClosed);
}

TEST_CASE("an open breaker rejects without reaching the server", "[grpc][breaker]") {
  Fixture f(R"({"defaultTarget": {"circuitBreaker": {"slidingWindowSize": 5,
      "minimumNumberOfCalls": 5, "waitDurationInOpenState": "60s"}}})");
  for (int i = 0; i < 5; ++i) f.Call(Failing(grpc::StatusCode::UNAVAILABLE)).IgnoreError();
  REQUIRE(f.server->requests_received() == 5);
  EchoRequest ok;
  const absl::Status status = f.Call(ok);
  CHECK(status.code() == absl::StatusCode::kUnavailable);
  CHECK_THAT(std::string(status.message()), Catch::Contains("circuit breaker 'echo' is open"));
  CHECK(f.server->requests_received() == 5);
}

TEST_CASE("the admin service lists, forces open, disables and resets breakers", "[grpc][admin]") {
  // The admin service is served by the same test server as the echo service.
  base::RealEnvironment env;
  prometheus::Registry registry;
  absl::StatusOr<Policy> policy = ParsePolicyJson(
      R"({"defaultTarget": {"circuitBreaker": {}, "retryBudget": {"ratio": 0.1, "maxTokens": 7},
          "bulkhead": {"maxConcurrentCalls": 9}}})");
  REQUIRE(policy.ok());
  TargetRegistry targets(*std::move(policy), env.environment(), registry);
  std::vector<AdminChange> audited;
  base::Mutex audited_mutex;
  // Callers name themselves in "x-operator"; a caller without one is refused.
  AdminServiceOptions options;
  options.authenticate = [](const grpc::ServerContext& context,
                            const std::string&) -> absl::StatusOr<std::string> {
    const auto found = context.client_metadata().find("x-operator");
    if (found == context.client_metadata().end()) {
      return absl::UnauthenticatedError("x-operator: missing");
    }
    return std::string(found->second.data(), found->second.size());
  };
  options.audit = [&](const AdminChange& change) {
    base::MutexLock lock(&audited_mutex);
    audited.push_back(change);
  };
  AdminService admin(targets, std::move(options));
  testing_support::EchoServer server(&admin);
  targets.GetTarget("morgue");
  targets.GetTarget("appointments");

  auto stub = v1::ResilienceAdmin::NewStub(
      grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
  {
    grpc::ClientContext context;
    v1::ListCircuitBreakersResponse list;
    REQUIRE(stub->ListCircuitBreakers(&context, {}, &list).ok());
    REQUIRE(list.circuit_breakers_size() == 2);
    CHECK(list.circuit_breakers(0).target() == "appointments");
    CHECK(list.circuit_breakers(1).target() == "morgue");
    CHECK(list.circuit_breakers(1).state() == v1::CircuitBreakerStatus::CLOSED);
    CHECK(list.circuit_breakers(1).bulkhead_max_concurrent_calls() == 9);
    CHECK(list.circuit_breakers(1).retry_budget_tokens() == Approx(7));
  }
  v1::CircuitBreakerRequest request;
  request.set_target("morgue");
  v1::CircuitBreakerStatus status;
  {
    // Listing is open; a change without the hook's approval is refused and changes nothing.
    grpc::ClientContext context;
    const grpc::Status refused = stub->ForceOpenCircuitBreaker(&context, request, &status);
    CHECK(refused.error_code() == grpc::StatusCode::UNAUTHENTICATED);
    CHECK_THAT(refused.error_message(), Catch::Contains("x-operator"));
    CHECK(targets.GetTarget("morgue").breaker().state() == BreakerState::kClosed);
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("x-operator", "alice");
    REQUIRE(stub->ForceOpenCircuitBreaker(&context, request, &status).ok());
    CHECK(status.state() == v1::CircuitBreakerStatus::FORCED_OPEN);
    CHECK(targets.GetTarget("morgue").breaker().state() == BreakerState::kForcedOpen);
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("x-operator", "alice");
    REQUIRE(stub->DisableCircuitBreaker(&context, request, &status).ok());
    CHECK(status.state() == v1::CircuitBreakerStatus::DISABLED);
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("x-operator", "bob");
    REQUIRE(stub->ResetCircuitBreaker(&context, request, &status).ok());
    CHECK(status.state() == v1::CircuitBreakerStatus::CLOSED);
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("x-operator", "alice");
    request.set_target("pharmacy");
    const grpc::Status missing = stub->ResetCircuitBreaker(&context, request, &status);
    CHECK(missing.error_code() == grpc::StatusCode::NOT_FOUND);
    CHECK_THAT(missing.error_message(), Catch::Contains("pharmacy"));
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("x-operator", "alice");
    request.set_target("");
    CHECK(stub->ForceOpenCircuitBreaker(&context, request, &status).error_code() ==
          grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(targets.GetTarget("morgue").breaker().state() == BreakerState::kClosed);
  }
  {
    // Each change was audited once, with who asked and the state before and after; the list
    // and the refused requests changed nothing and were not.
    base::MutexLock lock(&audited_mutex);
    REQUIRE(audited.size() == 3);
    CHECK(audited[0].method == "ForceOpenCircuitBreaker");
    CHECK(audited[0].target == "morgue");
    CHECK(audited[0].before == BreakerState::kClosed);
    CHECK(audited[0].after == BreakerState::kForcedOpen);
    CHECK(audited[0].identity == "alice");
    CHECK(audited[1].method == "DisableCircuitBreaker");
    CHECK(audited[1].before == BreakerState::kForcedOpen);
    CHECK(audited[1].after == BreakerState::kDisabled);
    CHECK(audited[2].method == "ResetCircuitBreaker");
    CHECK(audited[2].after == BreakerState::kClosed);
    CHECK(audited[2].identity == "bob");
    CHECK_THAT(audited[0].peer, Catch::Contains("127.0.0.1"));
  }
}

TEST_CASE("without an authentication hook the admin service refuses every change",
          "[grpc][admin]") {
  base::RealEnvironment env;
  prometheus::Registry registry;
  TargetRegistry targets(*ParsePolicyJson(R"({"defaultTarget": {"circuitBreaker": {}}})"),
                         env.environment(), registry);
  AdminService admin(targets, {});
  testing_support::EchoServer server(&admin);
  targets.GetTarget("morgue");
  auto stub = v1::ResilienceAdmin::NewStub(
      grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
  v1::CircuitBreakerRequest request;
  request.set_target("morgue");
  v1::CircuitBreakerStatus status;
  grpc::ClientContext context;
  CHECK(stub->DisableCircuitBreaker(&context, request, &status).error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  CHECK(targets.GetTarget("morgue").breaker().state() == BreakerState::kClosed);
  grpc::ClientContext list_context;
  v1::ListCircuitBreakersResponse list;
  CHECK(stub->ListCircuitBreakers(&list_context, {}, &list).ok());
}

}  // namespace
}  // namespace resilience
