// Many threads through one pipeline at once, with the real timer thread and attempts finishing
// on other threads: the concurrency test of the library, meant to run under ThreadSanitizer
// (it involves no gRPC runtime, whose Debian build TSan cannot see into).
#include <array>
#include <atomic>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "base/sync.h"
#include "resilience/guarded_call.h"
#include "resilience/hedged_call.h"
#include "testing_support/metrics_reader.h"

namespace resilience {
namespace {

constexpr char kPolicy[] = R"({"defaultTarget": {
  "methodConfig": [{"timeout": "2s", "retryPolicy": {"maxAttempts": 3,
    "initialBackoff": "0.0001s", "maxBackoff": "0.001s", "backoffMultiplier": 2}}],
  "retryBudget": {"ratio": 0.5, "minRetriesPerSecond": 100, "maxTokens": 50},
  "circuitBreaker": {"slidingWindowSize": 20, "minimumNumberOfCalls": 10,
                     "failureRateThreshold": 60, "waitDurationInOpenState": "0.002s",
                     "permittedNumberOfCallsInHalfOpenState": 2},
  "bulkhead": {"maxConcurrentCalls": 4, "maxWaitDuration": "0.005s"}}})";

// Finishes each attempt on a helper thread, failing about half of them.
class ThreadedCall final : public GuardedCall {
 public:
  ThreadedCall(GuardedMethod& method, std::atomic<int>& done_count, unsigned seed)
      : GuardedCall(method), done_count_(done_count), random_(seed) {}

 private:
  void StartAttempt(absl::Time) override {
    const bool fail = std::uniform_int_distribution<int>(0, 1)(random_) == 1;
    std::thread([this, fail] {
      FinishAttempt(fail ? absl::Status(absl::StatusCode::kUnavailable, "down") : absl::OkStatus());
    }).detach();
  }
  void OnDone(const absl::Status&) override {
    std::atomic<int>& done_count = done_count_;
    delete this;
    done_count.fetch_add(1);
  }

  std::atomic<int>& done_count_;
  std::mt19937 random_;
};

TEST_CASE("concurrent calls keep the pipeline's books balanced", "[stress]") {
  base::RealEnvironment env;
  prometheus::Registry registry;
  TargetRegistry targets(*ParsePolicyJson(kPolicy), env.environment(), registry);
  GuardedMethod& method = targets.GetTarget("downstream").Method("/stress.v1.S/Call");

  constexpr int kThreads = 4;
  constexpr int kCallsPerThread = 300;
  std::atomic<int> done{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < kThreads; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < kCallsPerThread; ++i) {
        (new ThreadedCall(method, done, static_cast<unsigned>(t * 100000 + i)))->Start();
      }
    });
  }
  for (std::thread& caller : callers) caller.join();
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (done.load() < kThreads * kCallsPerThread && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));  // Polling with a deadline, not a fixed wait.
  }
  REQUIRE(done.load() == kThreads * kCallsPerThread);

  double calls = 0;
  double rejected = 0;  // Calls that may have ended before sending anything.
  for (const char* outcome : {"success", "failure", "circuit_open", "bulkhead_full",
                              "deadline_exceeded", "budget_exhausted"}) {
    const double ended = testing_support::MetricValue(
        *targets.call_metrics(), "resilience_calls_total", {{"outcome", outcome}});
    calls += ended;
    if (std::string(outcome) == "circuit_open" || std::string(outcome) == "bulkhead_full") {
      rejected += ended;
    }
  }
  CHECK(calls == kThreads * kCallsPerThread);
  CHECK(testing_support::MetricValue(*targets.call_metrics(), "resilience_bulkhead_in_flight",
                                     {}) == 0);
  CHECK(targets.GetTarget("downstream").bulkhead().in_flight() == 0);
  const double attempts =
      testing_support::MetricValue(*targets.call_metrics(), "resilience_attempts_total", {});
  const double retries =
      testing_support::MetricValue(*targets.call_metrics(), "resilience_retries_total", {});
  CHECK(attempts <= 3 * calls);
  // Every attempt is a call's first or a retry: the first attempts are at most one per call,
  // and at least one per call that was not turned away before sending.
  const double first_attempts = attempts - retries;
  CHECK(first_attempts <= calls);
  CHECK(first_attempts >= calls - rejected);
}

// Like ThreadedCall, but a third of its attempts are cancelled by the transport's thread before
// they finish (as a caller's cancellation would), and it counts its completions.
class CancellableCall final : public GuardedCall {
 public:
  CancellableCall(GuardedMethod& method, std::atomic<int>& done_count, unsigned seed)
      : GuardedCall(method), done_count_(done_count), random_(seed) {}

 private:
  void StartAttempt(absl::Time) override {
    const int roll = std::uniform_int_distribution<int>(0, 2)(random_);
    std::thread([this, roll] {
      if (roll == 0) {
        Cancel();
        FinishAttempt(absl::CancelledError("cancelled by the transport"));
      } else {
        FinishAttempt(roll == 1 ? absl::Status(absl::StatusCode::kUnavailable, "down")
                                : absl::OkStatus());
      }
    }).detach();
  }
  void OnDone(const absl::Status&) override {
    std::atomic<int>& done_count = done_count_;
    delete this;  // A second completion would be a use after free: ASan and TSan see it.
    done_count.fetch_add(1);
  }

  std::atomic<int>& done_count_;
  std::mt19937 random_;
};

TEST_CASE("cancelled calls and a registry shut down mid-flight each complete exactly once",
          "[stress][shutdown]") {
  base::RealEnvironment env;
  prometheus::Registry registry;
  // Retries wait 20 ms or more, so that many are still waiting when the registry goes.
  std::optional<TargetRegistry> targets;
  targets.emplace(*ParsePolicyJson(R"({"defaultTarget": {
      "methodConfig": [{"timeout": "5s", "retryPolicy": {"maxAttempts": 3,
        "initialBackoff": "0.04s", "maxBackoff": "0.04s", "backoffMultiplier": 1}}],
      "bulkhead": {"maxConcurrentCalls": 8, "maxWaitDuration": "0.05s"}}})"),
                  env.environment(), registry);
  GuardedMethod& method = targets->GetTarget("downstream").Method("/stress.v1.S/Call");
  constexpr int kThreads = 4;
  constexpr int kCallsPerThread = 200;
  std::atomic<int> done{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < kThreads; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < kCallsPerThread; ++i) {
        (new CancellableCall(method, done, static_cast<unsigned>(t * 100000 + i)))->Start();
      }
    });
  }
  for (std::thread& caller : callers) caller.join();
  targets.reset();  // Ends the waiting calls and waits for those in flight.
  CHECK(done.load() == kThreads * kCallsPerThread);
}

// A hedged call whose attempts each answer on their own thread after up to 2 ms (sooner with
// CANCELLED when cancelled), failing a third of the time (UNAVAILABLE, non-fatal); a tenth of
// the calls are also cancelled by their caller from yet another thread.
class ThreadedHedgedCall final : public HedgedCall {
 public:
  ThreadedHedgedCall(GuardedMethod& method, std::atomic<int>& done_count,
                     std::atomic<int>& ended_count, unsigned seed)
      : HedgedCall(method), done_count_(done_count), ended_count_(ended_count), random_(seed) {}

  void Begin() {
    bool cancel;
    {
      base::MutexLock lock(&random_mutex_);
      cancel = std::uniform_int_distribution<int>(0, 9)(random_) == 0;
    }
    Start();
    // The call may end before Start returns (a rejection) or while Cancel runs: the object goes
    // when both the call and its caller are done with it.
    if (cancel) {
      std::thread([this] {
        Cancel();
        Drop();
      }).detach();
    } else {
      Drop();
    }
  }

 private:
  void StartAttempt(int index, absl::Time) override {
    int roll;
    absl::Duration wait;
    {
      base::MutexLock lock(&random_mutex_);  // Hedges may start on two threads at once.
      roll = std::uniform_int_distribution<int>(0, 2)(random_);
      wait = absl::Microseconds(std::uniform_int_distribution<int>(0, 2000)(random_));
    }
    std::thread([this, index, roll, wait] {
      const absl::Time until = absl::Now() + wait;
      while (!cancelled_[index].load() && absl::Now() < until) {
        absl::SleepFor(absl::Microseconds(100));
      }
      if (cancelled_[index].load()) {
        FinishAttempt(index, absl::CancelledError("cancelled"));
      } else {
        FinishAttempt(index, roll == 0 ? absl::UnavailableError("down") : absl::OkStatus());
      }
    }).detach();
  }
  void CancelAttempt(int index) override { cancelled_[index].store(true); }
  void OnDone(const absl::Status&, int) override { done_count_.fetch_add(1); }
  void OnEnded() override {
    std::atomic<int>& ended_count = ended_count_;
    Drop();  // A second end would be a use after free: ASan and TSan see it.
    ended_count.fetch_add(1);
  }
  void Drop() {
    if (owners_.fetch_sub(1) == 1) delete this;
  }

  std::atomic<int>& done_count_;
  std::atomic<int>& ended_count_;
  base::Mutex random_mutex_;
  std::mt19937 random_ ABSL_GUARDED_BY(random_mutex_);
  std::array<std::atomic<bool>, kMaxAttempts> cancelled_{};
  std::atomic<int> owners_{2};  // The call and its caller.
};

TEST_CASE("concurrent hedged calls each answer once and end once, with the books balanced",
          "[stress][hedging]") {
  base::RealEnvironment env;
  prometheus::Registry registry;
  std::optional<TargetRegistry> targets;
  targets.emplace(*ParsePolicyJson(R"({"defaultTarget": {
      "methodConfig": [{"timeout": "5s", "hedgingPolicy": {"maxAttempts": 3,
        "hedgingDelay": "0.0005s", "nonFatalStatusCodes": ["UNAVAILABLE"]}}],
      "retryBudget": {"ratio": 0.5, "minRetriesPerSecond": 100, "maxTokens": 50},
      "circuitBreaker": {"slidingWindowSize": 50, "minimumNumberOfCalls": 20,
                         "failureRateThreshold": 90, "waitDurationInOpenState": "0.002s"},
      "bulkhead": {"maxConcurrentCalls": 16, "maxWaitDuration": "0.01s"}}})"),
                  env.environment(), registry);
  GuardedMethod& method = targets->GetTarget("downstream").Method("/stress.v1.S/Call");
  constexpr int kThreads = 4;
  constexpr int kCallsPerThread = 150;
  std::atomic<int> done{0};
  std::atomic<int> ended{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < kThreads; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < kCallsPerThread; ++i) {
        (new ThreadedHedgedCall(method, done, ended, static_cast<unsigned>(t * 100000 + i)))
            ->Begin();
      }
    });
  }
  for (std::thread& caller : callers) caller.join();
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (ended.load() < kThreads * kCallsPerThread && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));  // Polling with a deadline, not a fixed wait.
  }
  CHECK(done.load() == kThreads * kCallsPerThread);
  REQUIRE(ended.load() == kThreads * kCallsPerThread);
  CHECK(targets->GetTarget("downstream").bulkhead().in_flight() == 0);
  const auto total = [&](const char* name) {
    return testing_support::MetricValue(*targets->call_metrics(), name, {});
  };
  CHECK(total("resilience_calls_total") == kThreads * kCallsPerThread);
  // Hedges are attempts after a call's first: at most one first attempt per call.
  CHECK(total("resilience_attempts_total") - total("resilience_hedges_total") <=
        kThreads * kCallsPerThread);
  CHECK(total("resilience_hedges_total") > 0);
  targets.reset();
}

}  // namespace
}  // namespace resilience
