#include "resilience/adaptive_throttle.h"

#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "base/testing/fake_environment.h"

namespace resilience {
namespace {

using absl::StatusCode;

AdaptiveThrottleConfig Config(double k, std::uint32_t window_seconds) {
  AdaptiveThrottleConfig config;
  config.enabled = true;
  config.k = k;
  config.window_seconds = window_seconds;
  return config;
}

struct Fixture {
  explicit Fixture(const AdaptiveThrottleConfig& config) : throttle(config, env.random()) {}

  // Sends `n` requests that the backend answers with `code`; returns how many were admitted.
  int Send(int n, StatusCode code) {
    int admitted = 0;
    for (int i = 0; i < n; ++i) {
      if (!throttle.Admit(env.Now())) continue;
      ++admitted;
      throttle.RecordOutcome(code, env.Now());
    }
    return admitted;
  }
  // Lets the cached probability refresh.
  void Refresh() { env.Advance(AdaptiveThrottle::kRefresh); }

  base::testing::FakeEnvironment env;
  AdaptiveThrottle throttle;
};

TEST_CASE("a healthy backend is never throttled", "[throttle]") {
  Fixture f(Config(2, 60));
  f.env.random().Push(0.0);  // The draw most likely to reject.
  for (int round = 0; round < 20; ++round) {
    CHECK(f.Send(100, StatusCode::kOk) == 100);
    f.Refresh();
  }
  CHECK(f.throttle.RejectionProbability(f.env.Now()) == 0.0);
}

TEST_CASE("the probability is max(0, (requests - K x accepts) / (requests + 1))", "[throttle]") {
  Fixture f(Config(2, 60));
  f.env.random().Push(0.999);  // Admit everything while the counts build up.
  // 100 requests, 25 accepted: (100 - 2 x 25) / 101.
  CHECK(f.Send(25, StatusCode::kOk) == 25);
  CHECK(f.Send(75, StatusCode::kResourceExhausted) == 75);
  f.Refresh();
  CHECK(f.throttle.RejectionProbability(f.env.Now()) == Approx(50.0 / 101));
  // Half accepted is exactly K = 2's margin: no throttling.
  Fixture half(Config(2, 60));
  half.env.random().Push(0.999);
  half.Send(50, StatusCode::kOk);
  half.Send(50, StatusCode::kUnavailable);
  half.Refresh();
  CHECK(half.throttle.RejectionProbability(half.env.Now()) == 0.0);
}

TEST_CASE("a backend rejecting everything is spared nearly every request", "[throttle]") {
  Fixture f(Config(2, 60));
  // The probability is recomputed only when kRefresh has passed: no draw before Refresh.
  CHECK(f.Send(200, StatusCode::kResourceExhausted) == 200);
  f.Refresh();
  const double probability = f.throttle.RejectionProbability(f.env.Now());
  CHECK(probability > 0.99);
  f.env.random().Push(0.98);  // Any draw below the probability rejects.
  CHECK(f.Send(100, StatusCode::kResourceExhausted) == 0);
  // Locally rejected requests count as requests: the probability keeps rising with demand.
  f.Refresh();
  CHECK(f.throttle.RejectionProbability(f.env.Now()) > probability);
}

TEST_CASE("other failures are accepts: only the rejection codes signal overload", "[throttle]") {
  Fixture f(Config(2, 60));
  f.env.random().Push(0.0);
  for (StatusCode code : {StatusCode::kInternal, StatusCode::kDeadlineExceeded,
                          StatusCode::kNotFound, StatusCode::kCancelled}) {
    CHECK(f.Send(50, code) == 50);
    f.Refresh();
  }
  CHECK(f.throttle.RejectionProbability(f.env.Now()) == 0.0);
}

TEST_CASE("the window slides: old rejections are forgotten", "[throttle]") {
  Fixture f(Config(2, 10));
  f.env.random().Push(0.999);
  f.Send(100, StatusCode::kResourceExhausted);
  f.Refresh();
  CHECK(f.throttle.RejectionProbability(f.env.Now()) > 0.9);
  f.env.Advance(absl::Seconds(10));
  CHECK(f.throttle.RejectionProbability(f.env.Now()) == 0.0);
}

TEST_CASE("recovery lowers the probability as accepts come back", "[throttle]") {
  Fixture f(Config(2, 60));
  f.env.random().Push(0.999);
  f.Send(100, StatusCode::kResourceExhausted);
  f.Refresh();
  const double during = f.throttle.RejectionProbability(f.env.Now());
  f.Send(100, StatusCode::kOk);
  f.Refresh();
  // (200 - 2 x 100) / 201: back to nothing once as much is accepted as K allows.
  CHECK(f.throttle.RejectionProbability(f.env.Now()) < during);
  CHECK(f.throttle.RejectionProbability(f.env.Now()) == 0.0);
}

TEST_CASE("a disabled throttle admits everything and counts nothing", "[throttle]") {
  Fixture f(AdaptiveThrottleConfig{});
  f.env.random().Push(0.0);
  CHECK(f.Send(100, StatusCode::kResourceExhausted) == 100);
  CHECK(f.throttle.RejectionProbability(f.env.Now()) == 0.0);
}

TEST_CASE("threads counting at once are all seen", "[throttle]") {
  Fixture f(Config(2, 60));
  f.env.random().Push(0.999);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 250; ++i) {
        if (f.throttle.Admit(f.env.Now())) {
          f.throttle.RecordOutcome(StatusCode::kResourceExhausted, f.env.Now());
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  f.Refresh();
  CHECK(f.throttle.RejectionProbability(f.env.Now()) == Approx(1000.0 / 1001));
}

}  // namespace
}  // namespace resilience
