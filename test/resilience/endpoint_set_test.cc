// EndpointSet with the pipeline against real gRPC servers on loopback: addresses, spreading,
// a dead endpoint skipped, a silent one cut off at the per-attempt timeout with the retry sent
// elsewhere, name resolution.
#include "resilience/endpoint_set.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "echo/v1/echo.grpc.pb.h"
#include "resilience/grpc_call.h"
#include "testing_support/echo_server.h"

namespace resilience {
namespace {

using echo::v1::EchoRequest;
using echo::v1::EchoResponse;

constexpr char kEchoMethod[] = "/echo.v1.EchoService/Echo";

// A port that accepts connections (the kernel completes the handshake) and never answers: a
// replica that froze, or whose packets vanish.
class SilentPort {
 public:
  SilentPort() {
    socket_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(socket_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(listen(socket_, 64) == 0);
    socklen_t length = sizeof address;
    REQUIRE(getsockname(socket_, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    address_ = absl::StrCat("127.0.0.1:", ntohs(address.sin_port));
  }
  ~SilentPort() { close(socket_); }
  const std::string& address() const { return address_; }

 private:
  int socket_ = -1;
  std::string address_;
};

struct Fixture {
  explicit Fixture(const std::string& policy_json) {
    absl::StatusOr<Policy> policy = ParsePolicyJson(policy_json);
    INFO(policy.status().ToString());
    REQUIRE(policy.ok());
    targets.emplace(*std::move(policy), env.environment(), registry);
    method = &targets->GetTarget("echo").Method(kEchoMethod);
  }
  void Use(const std::string& address) {
    absl::StatusOr<std::unique_ptr<EndpointSet>> created =
        EndpointSet::Create(targets->GetTarget("echo"), address);
    INFO(created.status().ToString());
    REQUIRE(created.ok());
    endpoints = *std::move(created);
  }
  absl::Status Call(const std::string& message = "hello") {
    EchoRequest request;
    request.set_message(message);
    absl::Status result;
    base::Notification finished;
    CallUnary<EchoRequest, EchoResponse>(
        *method, *endpoints, UnaryMethod<EchoRequest, EchoResponse>(kEchoMethod), request, {},
        [&](const absl::Status& status, EchoResponse& response) {
          result = status;
          if (status.ok() && response.message() != message) {
            result = absl::InternalError("wrong echo");
          }
          finished.Notify();
        });
    finished.WaitForNotification();
    return result;
  }
  EndpointSnapshot Of(const std::string& address) {
    for (const EndpointSnapshot& endpoint : endpoints->balancer().Snapshot()) {
      if (endpoint.address == address) return endpoint;
    }
    FAIL("no endpoint " << address);
    return {};
  }

  base::RealEnvironment env;
  prometheus::Registry registry;
  std::optional<TargetRegistry> targets;
  GuardedMethod* method = nullptr;
  std::unique_ptr<EndpointSet> endpoints;  // Destroyed before the targets.
};

constexpr char kReplicaPolicy[] = R"({"defaultTarget": {
    "methodConfig": [{"timeout": "2s", "perAttemptTimeout": "0.2s",
        "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.001s", "maxBackoff": "0.002s",
                        "retryableStatusCodes": ["UNAVAILABLE"]}}],
    "outlierDetection": {"interval": "0.1s"}}})";

TEST_CASE("addresses: lists, names and single endpoints, and malformed ones refused",
          "[endpoints][grpc]") {
  absl::StatusOr<ParsedAddress> list = ParseAddress("ipv4:127.0.0.1:1,127.0.0.1:2");
  REQUIRE(list.ok());
  CHECK(list->kind == ParsedAddress::Kind::kList);
  CHECK(list->endpoints == std::vector<std::string>{"127.0.0.1:1", "127.0.0.1:2"});
  absl::StatusOr<ParsedAddress> v6 = ParseAddress("ipv6:[::1]:50052");
  REQUIRE(v6.ok());
  CHECK(v6->endpoints == std::vector<std::string>{"[::1]:50052"});
  absl::StatusOr<ParsedAddress> dns = ParseAddress("dns:///morgue.hospital.svc:50052");
  REQUIRE(dns.ok());
  CHECK(dns->kind == ParsedAddress::Kind::kDns);
  CHECK(dns->host == "morgue.hospital.svc");
  CHECK(dns->port == "50052");
  CHECK(ParseAddress("dns:morgue:50052")->host == "morgue");
  CHECK(ParseAddress("localhost:50052")->kind == ParsedAddress::Kind::kSingle);
  for (const char* bad : {"ipv4:", "ipv4:127.0.0.1", "ipv4:127.0.0.1:0", "ipv6:::1:5",
                          "ipv4:127.0.0.1:1,", "dns:///morgue", "dns:///morgue:99999", ""}) {
    INFO(bad);
    absl::StatusOr<ParsedAddress> parsed = ParseAddress(bad);
    CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(parsed.status().message()),
               Catch::StartsWith(absl::StrCat("address \"", bad, "\"")));
  }
}

TEST_CASE("round_robin gives each endpoint its turn", "[endpoints][grpc]") {
  Fixture f(R"({"defaultTarget": {"methodConfig": [{"timeout": "2s"}],
                "loadBalancing": {"policy": "ROUND_ROBIN"}}})");
  testing_support::EchoServer a, b, c;
  f.Use(absl::StrCat("ipv4:", a.address(), ",", b.address(), ",", c.address()));
  for (int i = 0; i < 90; ++i) REQUIRE(f.Call().ok());
  for (const testing_support::EchoServer* server : {&a, &b, &c}) {
    INFO(server->address());
    CHECK(server->requests_received() == 30);
  }
}

TEST_CASE("peak-EWMA spreads concurrent calls over the endpoints", "[endpoints][grpc]") {
  // One at a time, peak-EWMA sends each call to the endpoint that answered fastest lately; with
  // calls in flight, their number weighs in and all endpoints share the load.
  Fixture f(kReplicaPolicy);
  testing_support::EchoServer a, b, c;
  f.Use(absl::StrCat("ipv4:", a.address(), ",", b.address(), ",", c.address()));
  for (int round = 0; round < 10; ++round) {
    constexpr int kConcurrent = 30;
    std::atomic<int> failed{0};
    std::atomic<int> remaining{kConcurrent};
    base::Notification finished;
    EchoRequest request;
    request.set_message("hello");
    for (int i = 0; i < kConcurrent; ++i) {
      CallUnary<EchoRequest, EchoResponse>(
          *f.method, *f.endpoints, UnaryMethod<EchoRequest, EchoResponse>(kEchoMethod), request, {},
          [&](const absl::Status& status, EchoResponse&) {
            if (!status.ok()) ++failed;
            if (--remaining == 0) finished.Notify();
          });
    }
    finished.WaitForNotification();
    REQUIRE(failed.load() == 0);
  }
  for (const testing_support::EchoServer* server : {&a, &b, &c}) {
    INFO(server->address());
    CHECK(server->requests_received() > 300 / 10);
  }
}

TEST_CASE("an endpoint that went away is skipped, its calls retried on another",
          "[endpoints][grpc]") {
  Fixture f(kReplicaPolicy);
  testing_support::EchoServer a, b;
  std::optional<testing_support::EchoServer> c(std::in_place);
  const std::string gone = c->address();
  f.Use(absl::StrCat("ipv4:", a.address(), ",", b.address(), ",", gone));
  for (int i = 0; i < 30; ++i) REQUIRE(f.Call().ok());
  c.reset();  // Killed: connections refused from now on.
  const absl::Time killed = absl::Now();
  std::optional<absl::Time> skipped_at;
  for (int i = 0; i < 200; ++i) {
    INFO("call " << i);
    REQUIRE(f.Call().ok());  // A refused attempt fails fast; the retry goes elsewhere.
    const EndpointSnapshot state = f.Of(gone);
    if (!skipped_at && (state.ejected || !state.reachable)) skipped_at = absl::Now();
    absl::SleepFor(absl::Milliseconds(5));
  }
  REQUIRE(skipped_at.has_value());
  CHECK(*skipped_at - killed < absl::Seconds(1));
}

TEST_CASE("a silent endpoint costs one per-attempt timeout, and the retry goes elsewhere",
          "[endpoints][grpc]") {
  Fixture f(R"({"defaultTarget": {
      "methodConfig": [{"timeout": "2s", "perAttemptTimeout": "0.2s",
          "retryPolicy": {"maxAttempts": 2, "initialBackoff": "0.001s", "maxBackoff": "0.002s",
                          "retryableStatusCodes": ["UNAVAILABLE"]}}],
      "outlierDetection": {"interval": "0.1s"}}})");
  testing_support::EchoServer a, b;
  SilentPort silent;
  f.Use(absl::StrCat("ipv4:", a.address(), ",", b.address(), ",", silent.address()));
  absl::Duration slowest;
  for (int i = 0; i < 40; ++i) {
    const absl::Time start = absl::Now();
    INFO("call " << i);
    // With two attempts only, a retry back to the silent endpoint would fail the call.
    REQUIRE(f.Call().ok());
    slowest = std::max(slowest, absl::Now() - start);
  }
  CHECK(slowest < absl::Milliseconds(200 + 150));
  CHECK(a.requests_received() + b.requests_received() >= 40);
}

TEST_CASE("a dns: address is resolved to its endpoints", "[endpoints][grpc]") {
  Fixture f(kReplicaPolicy);
  testing_support::EchoServer server;
  const std::string port = server.address().substr(server.address().rfind(':') + 1);
  f.Use(absl::StrCat("dns:///localhost:", port));
  std::vector<std::string> addresses;
  for (const EndpointSnapshot& endpoint : f.endpoints->balancer().Snapshot()) {
    addresses.push_back(endpoint.address);
  }
  INFO(absl::StrJoin(addresses, " "));
  CHECK(std::find(addresses.begin(), addresses.end(), server.address()) != addresses.end());
  // localhost may resolve to ::1 as well, where nothing listens: calls still succeed.
  for (int i = 0; i < 20; ++i) REQUIRE(f.Call().ok());
  CHECK(f.endpoints->resolution_failures() == 0);
}

TEST_CASE("a name that does not resolve leaves no endpoint, and calls fail UNAVAILABLE",
          "[endpoints][grpc]") {
  Fixture f(kReplicaPolicy);
  f.Use("dns:///no-such-host.invalid:50052");
  CHECK(f.endpoints->resolution_failures() >= 1);
  const absl::Status status = f.Call();
  CHECK(status.code() == absl::StatusCode::kUnavailable);
  CHECK_THAT(std::string(status.message()), Catch::Contains("has no endpoint"));
}

}  // namespace
}  // namespace resilience
