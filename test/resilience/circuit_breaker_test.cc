#include "resilience/circuit_breaker.h"

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "base/testing/fake_environment.h"

namespace resilience {
namespace {

using absl::StatusCode;

class RecordingListener final : public CircuitBreaker::Listener {
 public:
  void OnStateChange(BreakerState from, BreakerState to) override {
    transitions.emplace_back(from, to);
  }
  std::vector<std::pair<BreakerState, BreakerState>> transitions;
};

CircuitBreakerConfig SmallCountWindow() {
  CircuitBreakerConfig config;
  config.window_size = 10;
  config.minimum_calls = 4;
  config.failure_rate_threshold = 50;
  config.slow_call_duration = absl::Seconds(1);
  config.wait_in_open = absl::Seconds(5);
  config.max_wait_in_open = absl::Seconds(5);
  config.half_open_permitted_calls = 2;
  return config;
}

struct Fixture {
  explicit Fixture(const CircuitBreakerConfig& config)
      : breaker("morgue", config, env.clock(), env.random(), &listener) {}

  // Makes one call that ends with `code` after `elapsed`; returns false if it was rejected.
  bool Call(StatusCode code, absl::Duration elapsed = absl::Milliseconds(1)) {
    CircuitBreaker::Permit permit;
    if (!breaker.TryAcquire(permit, env.Now())) return false;
    breaker.Record(permit, code, elapsed, env.Now());
    return true;
  }
  bool Acquire(CircuitBreaker::Permit& permit) { return breaker.TryAcquire(permit, env.Now()); }
  void Record(const CircuitBreaker::Permit& permit, StatusCode code) {
    breaker.Record(permit, code, absl::Milliseconds(1), env.Now());
  }

  base::testing::FakeEnvironment env;
  RecordingListener listener;
  CircuitBreaker breaker;
};

TEST_CASE("breaker stays closed below minimum calls, then opens at the failure threshold",
          "[breaker]") {
  Fixture f(SmallCountWindow());
  for (int i = 0; i < 3; ++i) REQUIRE(f.Call(StatusCode::kUnavailable));
  CHECK(f.breaker.state() == BreakerState::kClosed);  // 3 calls < minimum 4.
  REQUIRE(f.Call(StatusCode::kUnavailable));
  CHECK(f.breaker.state() == BreakerState::kOpen);
  REQUIRE(f.listener.transitions.size() == 1);
  CHECK(f.listener.transitions[0] == std::make_pair(BreakerState::kClosed, BreakerState::kOpen));
}

TEST_CASE("breaker does not open below the failure threshold", "[breaker]") {
  Fixture f(SmallCountWindow());
  for (int i = 0; i < 10; ++i) {
    REQUIRE(f.Call(i % 3 == 1 ? StatusCode::kUnavailable : StatusCode::kOk));  // At most 40%.
  }
  CHECK(f.breaker.state() == BreakerState::kClosed);
  CHECK(f.breaker.Snapshot().window.failures == 3);
}

TEST_CASE("client errors do not count as failures by default", "[breaker]") {
  Fixture f(SmallCountWindow());
  for (StatusCode code : {StatusCode::kInvalidArgument, StatusCode::kNotFound,
                          StatusCode::kAlreadyExists, StatusCode::kFailedPrecondition}) {
    for (int i = 0; i < 3; ++i) REQUIRE(f.Call(code));
  }
  CHECK(f.breaker.state() == BreakerState::kClosed);
  CHECK(f.breaker.Snapshot().window.failures == 0);
}

TEST_CASE("failure codes are configurable", "[breaker]") {
  CircuitBreakerConfig config = SmallCountWindow();
  config.failure_codes = base::StatusCodeSet{StatusCode::kNotFound};
  Fixture f(config);
  for (int i = 0; i < 4; ++i) REQUIRE(f.Call(StatusCode::kUnavailable));
  CHECK(f.breaker.state() == BreakerState::kClosed);
  for (int i = 0; i < 4; ++i) f.Call(StatusCode::kNotFound);
  CHECK(f.breaker.state() == BreakerState::kOpen);
}

TEST_CASE("slow calls open the breaker at the slow-call threshold", "[breaker]") {
  CircuitBreakerConfig config = SmallCountWindow();
  config.slow_call_rate_threshold = 75;
  Fixture f(config);
  REQUIRE(f.Call(StatusCode::kOk, absl::Milliseconds(999)));  // Just under the slow duration.
  REQUIRE(f.Call(StatusCode::kOk, absl::Seconds(1)));
  REQUIRE(f.Call(StatusCode::kOk, absl::Seconds(3)));
  CHECK(f.breaker.state() == BreakerState::kClosed);  // Fewer than minimum calls.
  REQUIRE(f.Call(StatusCode::kOk, absl::Milliseconds(10)));
  CHECK(f.breaker.state() == BreakerState::kClosed);  // 2 of 4 slow: 50%.
  REQUIRE(f.Call(StatusCode::kOk, absl::Seconds(2)));
  REQUIRE(f.Call(StatusCode::kOk, absl::Seconds(2)));
  CHECK(f.breaker.state() == BreakerState::kClosed);  // 4 of 6: 67%.
  REQUIRE(f.Call(StatusCode::kOk, absl::Seconds(2)));
  REQUIRE(f.Call(StatusCode::kOk, absl::Seconds(2)));
  CHECK(f.breaker.state() == BreakerState::kOpen);  // 6 of 8: 75%, at the threshold.
}

TEST_CASE("a count window forgets the oldest outcome", "[breaker][window]") {
  ShardedWindow window(ShardedWindow::Kind::kCount, 3);
  constexpr std::uint64_t kGeneration = 1;
  const absl::Time now = absl::UnixEpoch();
  window.Record(kGeneration, now, true, false);
  window.Record(kGeneration, now + absl::Milliseconds(1), false, true);
  window.Record(kGeneration, now + absl::Milliseconds(2), false, false);
  CHECK(window.Counts(kGeneration, now).failures == 1);
  window.Record(kGeneration, now + absl::Milliseconds(3), false, false);  // Pushes out the failure.
  const WindowCounts counts = window.Counts(kGeneration, now);
  CHECK(counts.calls == 3);
  CHECK(counts.failures == 0);
  CHECK(counts.slow_calls == 1);
  // A new generation starts empty; the old one's outcomes are no longer counted.
  CHECK(window.Counts(kGeneration + 1, now).calls == 0);
}

TEST_CASE("a time window rolls over second by second", "[breaker][window]") {
  TimeWindow window(3);
  const absl::Time start = absl::FromUnixSeconds(1000);
  window.Record(start, true, false);                             // second 1000
  window.Record(start + absl::Milliseconds(1500), false, true);  // second 1001
  window.Record(start + absl::Milliseconds(2500), true, false);  // second 1002
  CHECK(window.Counts(start + absl::Milliseconds(2900)).calls == 3);
  // At second 1003, second 1000 has left the window.
  WindowCounts counts = window.Counts(start + absl::Seconds(3));
  CHECK(counts.calls == 2);
  CHECK(counts.failures == 1);
  CHECK(counts.slow_calls == 1);
  // After a gap longer than the window, everything has left.
  counts = window.Counts(start + absl::Seconds(60));
  CHECK(counts.calls == 0);
  window.Record(start + absl::Seconds(60), true, true);
  CHECK(window.Counts(start + absl::Seconds(60)).failures == 1);
}

TEST_CASE("time-based breaker judges only the recent seconds", "[breaker][window]") {
  CircuitBreakerConfig config = SmallCountWindow();
  config.window_type = CircuitBreakerConfig::WindowType::kTimeBased;
  config.window_size = 2;
  Fixture f(config);
  for (int i = 0; i < 3; ++i) REQUIRE(f.Call(StatusCode::kUnavailable));
  f.env.Advance(absl::Seconds(5));  // Those failures slide out.
  for (int i = 0; i < 3; ++i) REQUIRE(f.Call(StatusCode::kOk));
  REQUIRE(f.Call(StatusCode::kUnavailable));
  CHECK(f.breaker.state() == BreakerState::kClosed);  // 1 of 4 recent calls failed.
}

TEST_CASE("open breaker rejects until the wait is over, then lets probes through",
          "[breaker][half-open]") {
  Fixture f(SmallCountWindow());
  for (int i = 0; i < 4; ++i) f.Call(StatusCode::kUnavailable);
  REQUIRE(f.breaker.state() == BreakerState::kOpen);
  CHECK_FALSE(f.Call(StatusCode::kOk));
  f.env.Advance(absl::Milliseconds(4999));
  CHECK_FALSE(f.Call(StatusCode::kOk));
  f.env.Advance(absl::Milliseconds(1));
  CircuitBreaker::Permit first;
  CircuitBreaker::Permit second;
  CircuitBreaker::Permit third;
  REQUIRE(f.Acquire(first));
  CHECK(f.breaker.state() == BreakerState::kHalfOpen);
  REQUIRE(f.Acquire(second));
  CHECK_FALSE(f.Acquire(third));  // Only two probes.
  f.Record(first, StatusCode::kOk);
  CHECK(f.breaker.state() == BreakerState::kHalfOpen);
  f.Record(second, StatusCode::kOk);
  CHECK(f.breaker.state() == BreakerState::kClosed);
  CHECK(f.breaker.Snapshot().window.calls == 0);  // Closed with an empty window.
}

TEST_CASE("failed probes reopen the breaker with a growing, capped wait", "[breaker][half-open]") {
  CircuitBreakerConfig config = SmallCountWindow();
  config.wait_multiplier = 2;
  config.max_wait_in_open = absl::Seconds(12);
  Fixture f(config);
  for (int i = 0; i < 4; ++i) f.Call(StatusCode::kUnavailable);
  REQUIRE(f.breaker.state() == BreakerState::kOpen);
  const absl::Duration expected_waits[] = {absl::Seconds(5), absl::Seconds(10), absl::Seconds(12),
                                           absl::Seconds(12)};
  for (absl::Duration wait : expected_waits) {
    INFO("expected wait " << absl::FormatDuration(wait));
    CHECK(f.breaker.Snapshot().open_until - f.env.Now() == wait);
    f.env.Advance(wait);
    REQUIRE(f.Call(StatusCode::kUnavailable));
    REQUIRE(f.Call(StatusCode::kUnavailable));
    REQUIRE(f.breaker.state() == BreakerState::kOpen);
  }
  CHECK(f.breaker.Snapshot().consecutive_trips == 5);
  // Recovery resets the growth.
  f.env.Advance(absl::Seconds(12));
  REQUIRE(f.Call(StatusCode::kOk));
  REQUIRE(f.Call(StatusCode::kOk));
  REQUIRE(f.breaker.state() == BreakerState::kClosed);
  for (int i = 0; i < 4; ++i) f.Call(StatusCode::kUnavailable);
  CHECK(f.breaker.Snapshot().open_until - f.env.Now() == absl::Seconds(5));
}

TEST_CASE("open wait is jittered within [1 - jitter, 1 + jitter]", "[breaker]") {
  CircuitBreakerConfig config = SmallCountWindow();
  config.wait_jitter = 0.2;
  Fixture f(config);
  f.env.random().Push(0.0);  // Factor 0.8.
  for (int i = 0; i < 4; ++i) f.Call(StatusCode::kUnavailable);
  CHECK(f.breaker.Snapshot().open_until - f.env.Now() == absl::Seconds(4));

  Fixture top(config);
  top.env.random().Push(0.999999);  // Factor just under 1.2.
  for (int i = 0; i < 4; ++i) top.Call(StatusCode::kUnavailable);
  const absl::Duration longest = top.breaker.Snapshot().open_until - top.env.Now();
  CHECK(longest < absl::Seconds(6));
  CHECK(longest > absl::Milliseconds(5999));
}

TEST_CASE("half-open with many concurrent callers lets exactly the probes through",
          "[breaker][half-open]") {
  CircuitBreakerConfig config = SmallCountWindow();
  config.half_open_permitted_calls = 3;
  Fixture f(config);
  for (int i = 0; i < 4; ++i) f.Call(StatusCode::kUnavailable);
  f.env.Advance(absl::Seconds(5));
  std::atomic<int> permitted{0};
  std::vector<std::thread> callers;
  std::vector<CircuitBreaker::Permit> permits(64);
  for (int i = 0; i < 64; ++i) {
    callers.emplace_back([&, i] {
      if (f.Acquire(permits[static_cast<std::size_t>(i)])) permitted.fetch_add(1);
    });
  }
  for (std::thread& caller : callers) caller.join();
  CHECK(permitted.load() == 3);
}

TEST_CASE("IsRejecting tells without taking a permit", "[breaker]") {
  Fixture f(SmallCountWindow());
  CHECK_FALSE(f.breaker.IsRejecting(f.env.Now()));
  for (int i = 0; i < 4; ++i) f.Call(StatusCode::kUnavailable);
  CHECK(f.breaker.IsRejecting(f.env.Now()));
  f.env.Advance(absl::Seconds(5));
  CHECK_FALSE(f.breaker.IsRejecting(f.env.Now()));  // A probe would be let through.
  CHECK(f.breaker.state() == BreakerState::kOpen);  // Asking moved nothing.
  f.breaker.ForceOpen();
  CHECK(f.breaker.IsRejecting(f.env.Now()));
  f.breaker.Disable();
  CHECK_FALSE(f.breaker.IsRejecting(f.env.Now()));
}

TEST_CASE("a probe unanswered for the half-open maximum counts as failed and reopens",
          "[breaker][half-open]") {
  CircuitBreakerConfig config = SmallCountWindow();
  config.max_wait_in_half_open = absl::Seconds(3);
  Fixture f(config);
  for (int i = 0; i < 4; ++i) f.Call(StatusCode::kUnavailable);
  f.env.Advance(absl::Seconds(5));
  CircuitBreaker::Permit answered;
  CircuitBreaker::Permit hanging;
  CircuitBreaker::Permit other;
  REQUIRE(f.Acquire(answered));
  REQUIRE(f.Acquire(hanging));
  f.Record(answered, StatusCode::kOk);
  f.env.Advance(absl::Milliseconds(2999));
  CHECK_FALSE(f.Acquire(other));  // Still waiting for the second probe.
  CHECK(f.breaker.state() == BreakerState::kHalfOpen);
  f.env.Advance(absl::Milliseconds(1));
  CHECK_FALSE(f.Acquire(other));  // This asking reopens it: the probe counts as failed.
  CHECK(f.breaker.state() == BreakerState::kOpen);
  CHECK(f.breaker.Snapshot().consecutive_trips == 2);
  CHECK(f.listener.transitions.back() ==
        std::make_pair(BreakerState::kHalfOpen, BreakerState::kOpen));
  // The late answer belongs to the old HALF_OPEN and moves nothing.
  f.Record(hanging, StatusCode::kOk);
  CHECK(f.breaker.state() == BreakerState::kOpen);
  // The next wait, then probing as usual.
  f.env.Advance(absl::Seconds(5));
  REQUIRE(f.Call(StatusCode::kOk));
  REQUIRE(f.Call(StatusCode::kOk));
  CHECK(f.breaker.state() == BreakerState::kClosed);
}

TEST_CASE("half-open waits for probes still to be sent, however long", "[breaker][half-open]") {
  CircuitBreakerConfig config = SmallCountWindow();
  config.max_wait_in_half_open = absl::Seconds(3);
  Fixture f(config);
  for (int i = 0; i < 4; ++i) f.Call(StatusCode::kUnavailable);
  f.env.Advance(absl::Seconds(5));
  REQUIRE(f.Call(StatusCode::kOk));  // One probe of two; the second comes much later.
  f.env.Advance(absl::Seconds(60));
  REQUIRE(f.Call(StatusCode::kOk));  // Nothing was unanswered: no expiry.
  CHECK(f.breaker.state() == BreakerState::kClosed);
}

TEST_CASE("IsRejecting says yes while every half-open probe slot is taken",
          "[breaker][half-open]") {
  Fixture f(SmallCountWindow());
  for (int i = 0; i < 4; ++i) f.Call(StatusCode::kUnavailable);
  f.env.Advance(absl::Seconds(5));
  CircuitBreaker::Permit a;
  CircuitBreaker::Permit b;
  REQUIRE(f.Acquire(a));
  CHECK_FALSE(f.breaker.IsRejecting(f.env.Now()));  // One slot left.
  REQUIRE(f.Acquire(b));
  CHECK(f.breaker.IsRejecting(f.env.Now()));
  f.breaker.Release(b);
  CHECK_FALSE(f.breaker.IsRejecting(f.env.Now()));
  REQUIRE(f.Acquire(b));
  f.Record(a, StatusCode::kOk);
  f.Record(b, StatusCode::kOk);
  CHECK(f.breaker.state() == BreakerState::kClosed);
  CHECK_FALSE(f.breaker.IsRejecting(f.env.Now()));
}

TEST_CASE("a released half-open permit frees its probe slot", "[breaker][half-open]") {
  Fixture f(SmallCountWindow());
  for (int i = 0; i < 4; ++i) f.Call(StatusCode::kUnavailable);
  f.env.Advance(absl::Seconds(5));
  CircuitBreaker::Permit a;
  CircuitBreaker::Permit b;
  CircuitBreaker::Permit c;
  REQUIRE(f.Acquire(a));
  REQUIRE(f.Acquire(b));
  REQUIRE_FALSE(f.Acquire(c));
  CHECK(a.probe);  // Permits of the half-open state say so (a failed probe is not retried).
  f.breaker.Release(b);
  CHECK(f.Acquire(c));
}

TEST_CASE("outcomes of calls admitted under an earlier state are ignored", "[breaker]") {
  Fixture f(SmallCountWindow());
  CircuitBreaker::Permit stale;
  REQUIRE(f.Acquire(stale));  // Admitted while CLOSED.
  CHECK_FALSE(stale.probe);
  for (int i = 0; i < 4; ++i) f.Call(StatusCode::kUnavailable);
  f.env.Advance(absl::Seconds(5));
  CircuitBreaker::Permit probe;
  REQUIRE(f.Acquire(probe));
  f.Record(stale, StatusCode::kOk);
  f.Record(stale, StatusCode::kOk);
  CHECK(f.breaker.state() == BreakerState::kHalfOpen);  // The stale successes did not close it.
}

TEST_CASE("forced states hold until reset", "[breaker][forced]") {
  Fixture f(SmallCountWindow());
  f.breaker.ForceOpen();
  CHECK(f.breaker.state() == BreakerState::kForcedOpen);
  f.env.Advance(absl::Hours(1));
  CHECK_FALSE(f.Call(StatusCode::kOk));
  f.breaker.Disable();
  for (int i = 0; i < 100; ++i) REQUIRE(f.Call(StatusCode::kUnavailable));
  CHECK(f.breaker.state() == BreakerState::kDisabled);
  CHECK(f.breaker.Snapshot().window.calls == 0);  // Not judged.
  f.breaker.Reset();
  CHECK(f.breaker.state() == BreakerState::kClosed);
  CHECK(f.listener.transitions.back() ==
        std::make_pair(BreakerState::kDisabled, BreakerState::kClosed));
}

TEST_CASE("reset empties the window", "[breaker][forced]") {
  Fixture f(SmallCountWindow());
  for (int i = 0; i < 3; ++i) f.Call(StatusCode::kUnavailable);
  f.breaker.Reset();
  CHECK(f.breaker.Snapshot().window.calls == 0);
  f.Call(StatusCode::kUnavailable);
  CHECK(f.breaker.state() == BreakerState::kClosed);
}

TEST_CASE("a breaker disabled by config starts and resets to DISABLED", "[breaker]") {
  CircuitBreakerConfig config = SmallCountWindow();
  config.enabled = false;
  Fixture f(config);
  CHECK(f.breaker.state() == BreakerState::kDisabled);
  f.breaker.ForceOpen();
  CHECK_FALSE(f.Call(StatusCode::kOk));
  f.breaker.Reset();
  CHECK(f.breaker.state() == BreakerState::kDisabled);
}

TEST_CASE("rejection status is UNAVAILABLE and names the breaker", "[breaker]") {
  Fixture f(SmallCountWindow());
  CHECK(f.breaker.rejection_status().code() == StatusCode::kUnavailable);
  CHECK_THAT(std::string(f.breaker.rejection_status().message()), Catch::Contains("'morgue'"));
}

TEST_CASE("a sharded count window is the last N calls across threads", "[breaker][window]") {
  ShardedWindow window(ShardedWindow::Kind::kCount, 10);
  const absl::Time start = absl::FromUnixSeconds(1'700'000'000);
  // Ten successes on one thread, then ten failures on another: the last ten are the failures,
  // however many each thread's shard still holds.
  std::thread successes([&] {
    for (int i = 0; i < 10; ++i) window.Record(1, start + absl::Seconds(i), false, false);
  });
  successes.join();
  std::thread failures([&] {
    for (int i = 10; i < 20; ++i) window.Record(1, start + absl::Seconds(i), true, i % 2 == 0);
  });
  failures.join();
  WindowCounts merged = window.Counts(1, start + absl::Seconds(20));
  CHECK(merged.calls == 10);
  CHECK(merged.failures == 10);
  CHECK(merged.slow_calls == 5);
  // Interleaved: the newest ten by time, whichever thread recorded them.
  std::thread late_success([&] {
    for (int i = 20; i < 25; ++i) window.Record(1, start + absl::Seconds(i), false, false);
  });
  late_success.join();
  merged = window.Counts(1, start + absl::Seconds(25));
  CHECK(merged.calls == 10);
  CHECK(merged.failures == 5);
}

TEST_CASE("a sharded window starts empty with each generation", "[breaker][window]") {
  for (ShardedWindow::Kind kind : {ShardedWindow::Kind::kCount, ShardedWindow::Kind::kTime}) {
    ShardedWindow window(kind, 10);
    const absl::Time now = absl::FromUnixSeconds(1'700'000'000);
    for (int i = 0; i < 5; ++i) window.Record(1, now, true, false);
    CHECK(window.Counts(1, now).calls == 5);
    CHECK(window.Counts(2, now).calls == 0);  // A new generation starts empty...
    window.Record(2, now, true, false);
    CHECK(window.Counts(2, now).calls == 1);  // ...and fills as calls come.
    window.Record(1, now, true, false);       // A late outcome of the old one is dropped.
    CHECK(window.Counts(2, now).calls == 1);
  }
}

TEST_CASE("a sharded time window adds up every thread's calls", "[breaker][window]") {
  ShardedWindow window(ShardedWindow::Kind::kTime, 10);
  const absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) window.Record(1, now, i % 5 == 0, false);
    });
  }
  for (std::thread& thread : threads) thread.join();
  const WindowCounts merged = window.Counts(1, now);
  CHECK(merged.calls == 100);
  CHECK(merged.failures == 20);
  CHECK(window.Counts(1, now + absl::Seconds(10)).calls == 0);  // Slid out.
}

TEST_CASE("failures recorded on many threads at once open the breaker", "[breaker][window]") {
  Fixture f(SmallCountWindow());
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      for (int i = 0; i < 50; ++i) f.Call(StatusCode::kUnavailable);
    });
  }
  for (std::thread& caller : callers) caller.join();
  CHECK(f.breaker.state() == BreakerState::kOpen);
  CHECK(f.listener.transitions.size() == 1);
}

TEST_CASE("a success is never judged: the next failure opens a window already past its rate",
          "[breaker][window]") {
  Fixture f(SmallCountWindow());  // Minimum 4 calls, 50 %.
  for (int i = 0; i < 3; ++i) REQUIRE(f.Call(StatusCode::kUnavailable));
  REQUIRE(f.Call(StatusCode::kOk));  // 4 calls, 75 % failed: judged only on a failure.
  CHECK(f.breaker.state() == BreakerState::kClosed);
  REQUIRE(f.Call(StatusCode::kUnavailable));
  CHECK(f.breaker.state() == BreakerState::kOpen);
}

}  // namespace
}  // namespace resilience
