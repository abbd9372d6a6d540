// EndpointBalancer on a fake clock with a seeded random source: where attempts go, when endpoints
// are ejected and readmitted, and what a slow endpoint's share becomes.
#include "resilience/endpoint_balancer.h"

#include <catch2/catch.hpp>

#include <map>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "base/testing/fake_environment.h"

namespace resilience {
namespace {

using Attempt = EndpointBalancer::Attempt;

// Reproducible draws, unlike ScriptedRandom's constant 0.5.
class SeededRandom final : public base::RandomSource {
 public:
  double Uniform01() override { return std::uniform_real_distribution<double>(0, 1)(engine_); }

 private:
  std::mt19937_64 engine_{42};
};

const std::vector<std::string> kThree = {"a:1", "b:1", "c:1"};

struct Fixture {
  explicit Fixture(LoadBalancingConfig balancing = {}, OutlierDetectionConfig outlier = {})
      : balancer(balancing, outlier, {&env.clock(), &env.scheduler(), &random}) {
    balancer.SetAddresses(kThree);
  }
  // Picks, waits `latency` and finishes with `code`; returns the endpoint's address.
  std::string Call(absl::StatusCode code = absl::StatusCode::kOk,
                   absl::Duration latency = absl::Milliseconds(5)) {
    const Attempt attempt = balancer.Pick({});
    env.Advance(latency);
    balancer.Finish(attempt, code, false);
    return attempt.endpoint->address();
  }
  // Fails attempts that land on `bad` (others succeed) until `bad` was hit `times` times.
  void FailOn(const std::string& bad, int times) {
    for (int hits = 0, picks = 0; hits < times; ++picks) {
      if (picks == 10000) FAIL(bad << " was hit only " << hits << " times in " << picks);
      const Attempt attempt = balancer.Pick({});
      const bool on_bad = attempt.endpoint->address() == bad;
      balancer.Finish(attempt, on_bad ? absl::StatusCode::kUnavailable : absl::StatusCode::kOk,
                      false);
      hits += on_bad ? 1 : 0;
    }
  }
  EndpointSnapshot Of(const std::string& address) {
    for (const EndpointSnapshot& endpoint : balancer.Snapshot()) {
      if (endpoint.address == address) return endpoint;
    }
    FAIL("no endpoint " << address);
    return {};
  }

  base::testing::FakeEnvironment env;
  SeededRandom random;
  EndpointBalancer balancer;
};

// Open-loop load at `rate` for `duration`, each attempt taking its endpoint's latency; returns
// the attempts each endpoint got.
std::map<std::string, int> Simulate(Fixture& f, double rate, absl::Duration duration,
                                    const std::map<std::string, absl::Duration>& latency) {
  struct InFlight {
    absl::Time end;
    Attempt attempt;
    bool operator>(const InFlight& other) const { return end > other.end; }
  };
  std::priority_queue<InFlight, std::vector<InFlight>, std::greater<>> in_flight;
  std::map<std::string, int> picks;
  const absl::Time start = f.env.Now();
  const absl::Duration gap = absl::Seconds(1.0 / rate);
  for (absl::Time send = start; send < start + duration; send += gap) {
    while (!in_flight.empty() && in_flight.top().end <= send) {
      f.env.clock().Set(in_flight.top().end);
      f.balancer.Finish(in_flight.top().attempt, absl::StatusCode::kOk, false);
      in_flight.pop();
    }
    f.env.clock().Set(send);
    Attempt attempt = f.balancer.Pick({});
    const std::string& address = attempt.endpoint->address();
    ++picks[address];
    in_flight.push({send + latency.at(address), std::move(attempt)});
  }
  while (!in_flight.empty()) {
    f.env.clock().Set(std::max(f.env.Now(), in_flight.top().end));
    f.balancer.Finish(in_flight.top().attempt, absl::StatusCode::kOk, false);
    in_flight.pop();
  }
  return picks;
}

TEST_CASE("healthy endpoints share the attempts", "[endpoints]") {
  Fixture f;
  const std::map<std::string, int> picks = Simulate(f, 300, absl::Seconds(10),
                                                    {{"a:1", absl::Milliseconds(5)},
                                                     {"b:1", absl::Milliseconds(5)},
                                                     {"c:1", absl::Milliseconds(5)}});
  for (const auto& [address, count] : picks) {
    INFO(address);
    CHECK(count > 3000 * 0.25);
    CHECK(count < 3000 * 0.42);
  }
}

TEST_CASE("a retry goes to an endpoint its call has not tried", "[endpoints]") {
  Fixture f;
  for (int i = 0; i < 20; ++i) {
    const Attempt first = f.balancer.Pick({});
    const Attempt second = f.balancer.Pick({first.endpoint.get()});
    const Attempt third = f.balancer.Pick({first.endpoint.get(), second.endpoint.get()});
    CHECK(second.endpoint != first.endpoint);
    CHECK(third.endpoint != first.endpoint);
    CHECK(third.endpoint != second.endpoint);
    // Every endpoint tried: one is still given.
    const Attempt fourth =
        f.balancer.Pick({first.endpoint.get(), second.endpoint.get(), third.endpoint.get()});
    CHECK(fourth.endpoint != nullptr);
    for (const Attempt* attempt : {&first, &second, &third, &fourth}) {
      f.balancer.Finish(*attempt, absl::StatusCode::kOk, false);
    }
  }
}

TEST_CASE("consecutive failures eject at once, for a time that grows with each ejection",
          "[endpoints]") {
  OutlierDetectionConfig outlier;
  outlier.failure_percentage_threshold = 0;  // Only runs of failures, even across the sweeps.
  Fixture f({}, outlier);
  f.FailOn("b:1", 4);
  CHECK_FALSE(f.Of("b:1").ejected);
  f.FailOn("b:1", 1);  // The fifth in a row.
  REQUIRE(f.Of("b:1").ejected);
  CHECK(f.Of("b:1").ejected_until == f.env.Now() + absl::Seconds(1));
  for (int i = 0; i < 100; ++i) CHECK(f.Call() != "b:1");

  // Back after the base ejection time; failing again, ejected for twice as long.
  f.env.Advance(absl::Seconds(1));
  CHECK_FALSE(f.Of("b:1").ejected);
  f.FailOn("b:1", 5);
  REQUIRE(f.Of("b:1").ejected);
  CHECK(f.Of("b:1").ejected_until == f.env.Now() + absl::Seconds(2));
  CHECK(f.Of("b:1").times_ejected == 2);

  // Each interval in service takes one off: after two, the next ejection is 1 s again.
  f.env.Advance(absl::Seconds(2));
  f.balancer.Sweep();
  f.balancer.Sweep();
  f.FailOn("b:1", 5);
  CHECK(f.Of("b:1").ejected_until == f.env.Now() + absl::Seconds(1));
}

TEST_CASE("a success breaks a run of failures", "[endpoints]") {
  Fixture f;
  f.FailOn("a:1", 4);
  while (true) {
    const Attempt attempt = f.balancer.Pick({});
    f.balancer.Finish(attempt, absl::StatusCode::kOk, false);
    if (attempt.endpoint->address() == "a:1") break;
  }
  f.FailOn("a:1", 4);
  CHECK_FALSE(f.Of("a:1").ejected);
}

TEST_CASE("ejection time is capped at max_ejection_time", "[endpoints]") {
  OutlierDetectionConfig outlier;
  outlier.max_ejection_time = absl::Seconds(3);
  Fixture f({}, outlier);
  for (int round = 0; round < 5; ++round) {
    f.FailOn("c:1", 5);
    REQUIRE(f.Of("c:1").ejected);
    CHECK(f.Of("c:1").ejected_until - f.env.Now() <= absl::Seconds(3));
    f.env.Advance(absl::Seconds(3));
  }
  CHECK(f.Of("c:1").times_ejected == 5);
}

TEST_CASE("no more than max_ejection_percent of the endpoints are ejected", "[endpoints]") {
  Fixture f;  // 50 % of three: one.
  f.FailOn("a:1", 5);
  REQUIRE(f.Of("a:1").ejected);
  f.FailOn("b:1", 20);
  CHECK_FALSE(f.Of("b:1").ejected);
  // Once a:1 is back, b:1 may go: its run of failures went on, so its next failure ejects it.
  f.env.Advance(absl::Seconds(1));
  f.FailOn("b:1", 1);
  CHECK(f.Of("b:1").ejected);
}

TEST_CASE("every endpoint failing: the cap keeps the rest in service, and calls still go",
          "[endpoints]") {
  Fixture f;
  for (int i = 0; i < 60; ++i) f.Call(absl::StatusCode::kUnavailable);
  int ejected = 0;
  for (const EndpointSnapshot& endpoint : f.balancer.Snapshot()) ejected += endpoint.ejected;
  CHECK(ejected == 1);
}

TEST_CASE("failure-percentage ejection at the end of an interval", "[endpoints]") {
  OutlierDetectionConfig outlier;
  outlier.consecutive_failures = 0;  // Only the percentage.
  Fixture f({}, outlier);
  // c:1 fails every other attempt: never five in a row, but 50 %.
  bool fail_next = true;
  for (int i = 0; i < 90; ++i) {
    const Attempt attempt = f.balancer.Pick({});
    absl::StatusCode code = absl::StatusCode::kOk;
    if (attempt.endpoint->address() == "c:1") {
      code = fail_next ? absl::StatusCode::kDeadlineExceeded : absl::StatusCode::kOk;
      fail_next = !fail_next;
    }
    f.balancer.Finish(attempt, code, false);
  }
  CHECK_FALSE(f.Of("c:1").ejected);  // Judged only at the sweep.
  f.balancer.Sweep();
  CHECK(f.Of("c:1").ejected);
  CHECK_FALSE(f.Of("a:1").ejected);
}

TEST_CASE("failure-percentage ejection needs enough endpoints with enough volume", "[endpoints]") {
  OutlierDetectionConfig outlier;
  outlier.consecutive_failures = 0;
  Fixture f({}, outlier);
  for (int i = 0; i < 9; ++i) f.Call(absl::StatusCode::kUnavailable);  // Three each: too few.
  f.balancer.Sweep();
  for (const EndpointSnapshot& endpoint : f.balancer.Snapshot()) CHECK_FALSE(endpoint.ejected);
}

TEST_CASE("codes that describe the request, and attempts the caller cut, are not failures",
          "[endpoints]") {
  Fixture f;
  for (int i = 0; i < 30; ++i) f.Call(absl::StatusCode::kNotFound);
  for (int i = 0; i < 30; ++i) {
    const Attempt attempt = f.balancer.Pick({});
    f.balancer.Finish(attempt, absl::StatusCode::kCancelled, /*cut_by_caller=*/true);
  }
  f.balancer.Sweep();
  for (const EndpointSnapshot& endpoint : f.balancer.Snapshot()) {
    CHECK_FALSE(endpoint.ejected);
    CHECK(endpoint.failures == 0);
    CHECK(endpoint.in_flight == 0);
  }
}

TEST_CASE("an unreachable endpoint is skipped while another is reachable", "[endpoints]") {
  Fixture f;
  f.balancer.SetReachable("a:1", false);
  for (int i = 0; i < 50; ++i) CHECK(f.Call() != "a:1");
  f.balancer.SetReachable("b:1", false);
  f.balancer.SetReachable("c:1", false);
  CHECK_FALSE(f.Call().empty());  // None reachable: one is tried anyway.
  f.balancer.SetReachable("a:1", true);
  CHECK(f.Call() == "a:1");
}

TEST_CASE("peak-EWMA: a slow endpoint's share falls below 10 % within 2 s", "[endpoints]") {
  Fixture f;
  const std::map<std::string, absl::Duration> latency = {{"a:1", absl::Milliseconds(5)},
                                                         {"b:1", absl::Milliseconds(5)},
                                                         {"c:1", absl::Milliseconds(300)}};
  Simulate(f, 100, absl::Seconds(2), latency);  // The slow one is found out.
  const std::map<std::string, int> after = Simulate(f, 100, absl::Seconds(10), latency);
  const int slow_calls = after.count("c:1") != 0 ? after.at("c:1") : 0;
  CHECK(slow_calls < 1000 * 0.10);
  // It is still tried now and then, so that it can earn its share back.
  CHECK(f.Of("c:1").attempts > 0);
}

TEST_CASE("peak-EWMA: a slow endpoint that recovers earns its share back", "[endpoints]") {
  Fixture f;
  Simulate(f, 100, absl::Seconds(5),
           {{"a:1", absl::Milliseconds(5)},
            {"b:1", absl::Milliseconds(5)},
            {"c:1", absl::Milliseconds(300)}});
  const std::map<std::string, absl::Duration> healthy = {{"a:1", absl::Milliseconds(5)},
                                                         {"b:1", absl::Milliseconds(5)},
                                                         {"c:1", absl::Milliseconds(5)}};
  Simulate(f, 100, absl::Seconds(20), healthy);
  const std::map<std::string, int> after = Simulate(f, 100, absl::Seconds(10), healthy);
  CHECK(after.at("c:1") > 1000 * 0.25);
}

TEST_CASE("least-request prefers the endpoint with fewer attempts in flight", "[endpoints]") {
  LoadBalancingConfig balancing;
  balancing.policy = BalancingPolicy::kLeastRequest;
  Fixture f(balancing);
  // a:1 and b:1 each hold two attempts that never end; c:1 none.
  std::vector<Attempt> held;
  while (f.Of("a:1").in_flight < 2 || f.Of("b:1").in_flight < 2) {
    Attempt attempt = f.balancer.Pick({});
    if (attempt.endpoint->address() == "c:1" || f.Of(attempt.endpoint->address()).in_flight > 2) {
      f.balancer.Finish(attempt, absl::StatusCode::kOk, false);
    } else {
      held.push_back(std::move(attempt));
    }
  }
  for (int i = 0; i < 20; ++i) {
    const Attempt attempt = f.balancer.Pick({});
    // P2C: c:1 wins every pair it is in; the other pair (a, b) happens a third of the time.
    if (attempt.endpoint->address() != "c:1") {
      CHECK(f.Of(attempt.endpoint->address()).in_flight == 3);
    }
    f.balancer.Finish(attempt, absl::StatusCode::kOk, false);
  }
  for (const Attempt& attempt : held) f.balancer.Finish(attempt, absl::StatusCode::kOk, false);
}

TEST_CASE("round robin takes each endpoint in turn", "[endpoints]") {
  LoadBalancingConfig balancing;
  balancing.policy = BalancingPolicy::kRoundRobin;
  Fixture f(balancing);
  std::vector<std::string> order;
  for (int i = 0; i < 6; ++i) order.push_back(f.Call());
  CHECK(order == std::vector<std::string>{"a:1", "b:1", "c:1", "a:1", "b:1", "c:1"});
}

TEST_CASE("new addresses keep the state of those that stay and a dropped one is gone",
          "[endpoints]") {
  Fixture f;
  f.FailOn("a:1", 5);
  REQUIRE(f.Of("a:1").ejected);
  const Attempt on_c = [&] {
    while (true) {
      Attempt attempt = f.balancer.Pick({});
      if (attempt.endpoint->address() == "c:1") return attempt;
      f.balancer.Finish(attempt, absl::StatusCode::kOk, false);
    }
  }();
  f.balancer.SetAddresses({"a:1", "b:1", "d:1"});  // c:1 replaced by d:1 (a new pod).
  CHECK(f.Of("a:1").ejected);
  CHECK(f.balancer.size() == 3);
  f.balancer.Finish(on_c, absl::StatusCode::kUnavailable, false);  // Harmless.
  bool d_used = false;
  for (int i = 0; i < 20; ++i) d_used |= f.Call() == "d:1";
  CHECK(d_used);
  for (const EndpointSnapshot& endpoint : f.balancer.Snapshot()) CHECK(endpoint.address != "c:1");
}

TEST_CASE("a target with no endpoint gives no endpoint", "[endpoints]") {
  Fixture f;
  f.balancer.SetAddresses({});
  const Attempt attempt = f.balancer.Pick({});
  CHECK(attempt.endpoint == nullptr);
  f.balancer.Finish(attempt, absl::StatusCode::kUnavailable, false);
}

}  // namespace
}  // namespace resilience
