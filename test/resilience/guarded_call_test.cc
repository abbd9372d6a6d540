#include "resilience/guarded_call.h"

#include <atomic>
#include <cmath>
#include <optional>
#include <thread>
#include <vector>

#include <prometheus/metric_family.h>
#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/testing/fake_environment.h"
#include "testing_support/metrics_reader.h"

namespace resilience {
namespace {

using absl::StatusCode;

constexpr char kMethod[] = "/test.v1.Downstream/Do";

// A call whose attempts are answered by the test, one at a time.
class ScriptedCall final : public GuardedCall {
 public:
  explicit ScriptedCall(GuardedMethod& method) : GuardedCall(method) {}
  // A test that stops (a failed REQUIRE) with an attempt in flight ends it, so that the
  // registry's shutdown does not wait for it forever.
  ~ScriptedCall() override {
    if (attempt_in_flight) {
      Cancel();
      attempt_in_flight = false;
      FinishAttempt(absl::CancelledError());
    }
  }

  // Answers the attempt in flight.
  void Answer(StatusCode code, Pushback pushback = {}) {
    REQUIRE(attempt_in_flight);
    attempt_in_flight = false;
    FinishAttempt(code == StatusCode::kOk ? absl::OkStatus() : absl::Status(code, "scripted"),
                  pushback);
  }

  bool attempt_in_flight = false;
  std::vector<absl::Time> attempt_deadlines;
  std::vector<absl::Time> attempt_times;
  std::optional<absl::Status> result;
  int attempts_cancelled = 0;  // CancelAttempt calls with an attempt in flight.

 private:
  void StartAttempt(absl::Time attempt_deadline) override {
    attempt_in_flight = true;
    attempt_deadlines.push_back(attempt_deadline);
    attempt_times.push_back(clock().Now());
  }
  void CancelAttempt() override {
    if (attempt_in_flight) ++attempts_cancelled;
  }
  void OnDone(const absl::Status& status) override { result = status; }
};

struct Fixture {
  explicit Fixture(const std::string& policy_json) : policy_json_(policy_json) {
    absl::StatusOr<Policy> policy = ParsePolicyJson(policy_json);
    INFO(policy.status().ToString());
    REQUIRE(policy.ok());
    targets.emplace(*std::move(policy), env.environment(), registry);
    method = &targets->GetTarget("downstream").Method(kMethod);
  }

  double Calls(const std::string& outcome) {
    return testing_support::MetricValue(*targets->call_metrics(), "resilience_calls_total",
                                        {{"target", "downstream"}, {"outcome", outcome}});
  }
  double Metric(const std::string& name) {
    return testing_support::MetricValue(*targets->call_metrics(), name, {{"target", "downstream"}});
  }

  std::string policy_json_;
  base::testing::FakeEnvironment env;
  prometheus::Registry registry;
  std::optional<TargetRegistry> targets;
  GuardedMethod* method = nullptr;
};

constexpr char kRetryPolicy[] = R"({"defaultTarget": {"methodConfig": [{
    "timeout": "10s",
    "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.1s", "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]}}]}})";

TEST_CASE("a successful call makes one attempt within the policy timeout", "[call]") {
  Fixture f(kRetryPolicy);
  ScriptedCall call(*f.method);
  call.Start();
  REQUIRE(call.attempt_in_flight);
  CHECK(call.attempt_deadlines[0] == f.env.Now() + absl::Seconds(10));
  call.Answer(StatusCode::kOk);
  REQUIRE(call.result);
  CHECK(call.result->ok());
  CHECK(f.Calls("success") == 1);
  CHECK(f.Metric("resilience_attempts_total") == 1);
  CHECK(f.Metric("resilience_retries_total") == 0);
}

TEST_CASE("the deadline is the earlier of the timeout and the parent's minus the margin",
          "[call][deadline]") {
  Fixture f(
      R"({"defaultTarget": {"methodConfig": [{"timeout": "2s", "deadlineMargin": "0.1s"}]}})");
  ScriptedCall parent_bound(*f.method);
  parent_bound.Start(f.env.Now() + absl::Seconds(1));
  CHECK(parent_bound.deadline() == f.env.Now() + absl::Milliseconds(900));
  parent_bound.Answer(StatusCode::kOk);

  ScriptedCall policy_bound(*f.method);
  policy_bound.Start(f.env.Now() + absl::Seconds(5));
  CHECK(policy_bound.deadline() == f.env.Now() + absl::Seconds(2));
  policy_bound.Answer(StatusCode::kOk);
}

TEST_CASE("a call whose time is already spent fails without an attempt", "[call][deadline]") {
  Fixture f(R"({"defaultTarget": {"methodConfig": [{"deadlineMargin": "0.1s"}]}})");
  ScriptedCall call(*f.method);
  call.Start(f.env.Now() + absl::Milliseconds(50));  // Less than the margin is left.
  REQUIRE(call.result);
  CHECK(call.result->code() == StatusCode::kDeadlineExceeded);
  CHECK(call.attempt_times.empty());
  CHECK(f.Calls("deadline_exceeded") == 1);
  CHECK(f.Metric("resilience_attempts_total") == 0);
}

TEST_CASE("retries back off with full jitter, on the scheduler", "[call][retry]") {
  Fixture f(kRetryPolicy);
  f.env.random().Push(0.5);
  f.env.random().Push(0.5);
  f.env.random().Push(0.5);
  ScriptedCall call(*f.method);
  const absl::Time start = f.env.Now();
  call.Start();
  call.Answer(StatusCode::kUnavailable);
  CHECK_FALSE(call.attempt_in_flight);  // Waiting, on no thread.
  CHECK(f.env.scheduler().pending() == 1);
  f.env.Advance(absl::Milliseconds(49));
  CHECK_FALSE(call.attempt_in_flight);
  f.env.Advance(absl::Milliseconds(1));
  REQUIRE(call.attempt_in_flight);  // 0.5 x 100 ms.
  call.Answer(StatusCode::kUnavailable);
  f.env.Advance(absl::Milliseconds(100));  // 0.5 x 200 ms.
  REQUIRE(call.attempt_in_flight);
  call.Answer(StatusCode::kUnavailable);
  f.env.Advance(absl::Milliseconds(200));  // 0.5 x 400 ms.
  REQUIRE(call.attempt_in_flight);
  call.Answer(StatusCode::kUnavailable);
  REQUIRE(call.result);  // Four attempts: the policy's maximum.
  CHECK(call.result->code() == StatusCode::kUnavailable);
  CHECK(call.attempt_times == std::vector<absl::Time>{start, start + absl::Milliseconds(50),
                                                      start + absl::Milliseconds(150),
                                                      start + absl::Milliseconds(350)});
  CHECK(f.Calls("failure") == 1);
  CHECK(f.Metric("resilience_attempts_total") == 4);
  CHECK(f.Metric("resilience_retries_total") == 3);
}

TEST_CASE("codes outside the retryable set are not retried", "[call][retry]") {
  Fixture f(kRetryPolicy);
  ScriptedCall call(*f.method);
  call.Start();
  call.Answer(StatusCode::kInternal);
  REQUIRE(call.result);
  CHECK(call.result->code() == StatusCode::kInternal);
  CHECK(call.attempt_times.size() == 1);
}

TEST_CASE("a retry is not scheduled past the deadline", "[call][retry][deadline]") {
  Fixture f(R"({"defaultTarget": {"methodConfig": [{
      "timeout": "0.3s",
      "retryPolicy": {"maxAttempts": 5, "initialBackoff": "1s", "maxBackoff": "1s"}}]}})");
  f.env.random().Push(0.5);  // A 500 ms backoff; 300 ms left.
  ScriptedCall call(*f.method);
  call.Start();
  call.Answer(StatusCode::kUnavailable);
  REQUIRE(call.result);  // Returned at once, not after sleeping.
  CHECK(call.result->code() == StatusCode::kUnavailable);
  CHECK(f.env.scheduler().pending() == 0);
}

TEST_CASE("valid pushback replaces the backoff", "[call][pushback]") {
  Fixture f(kRetryPolicy);
  ScriptedCall call(*f.method);
  call.Start();
  call.Answer(StatusCode::kUnavailable, ParsePushback("700"));
  f.env.Advance(absl::Milliseconds(699));
  CHECK_FALSE(call.attempt_in_flight);
  f.env.Advance(absl::Milliseconds(1));
  CHECK(call.attempt_in_flight);
  call.Answer(StatusCode::kOk);
  CHECK(call.result->ok());
}

TEST_CASE("malformed or negative pushback stops retrying", "[call][pushback]") {
  for (const char* value : {"-1", "soon", ""}) {
    INFO("pushback '" << value << "'");
    Fixture f(kRetryPolicy);
    ScriptedCall call(*f.method);
    call.Start();
    call.Answer(StatusCode::kUnavailable, ParsePushback(value));
    REQUIRE(call.result);
    CHECK(call.attempt_times.size() == 1);
  }
}

TEST_CASE("RESOURCE_EXHAUSTED is retried only with pushback", "[call][pushback]") {
  Fixture f(kRetryPolicy);
  ScriptedCall without(*f.method);
  without.Start();
  without.Answer(StatusCode::kResourceExhausted);
  REQUIRE(without.result);
  CHECK(without.attempt_times.size() == 1);

  ScriptedCall with(*f.method);
  with.Start();
  with.Answer(StatusCode::kResourceExhausted, ParsePushback("10"));
  CHECK_FALSE(with.result);
  f.env.Advance(absl::Milliseconds(10));
  CHECK(with.attempt_in_flight);
  with.Answer(StatusCode::kOk);
}

TEST_CASE("a non-idempotent method is never retried once sent", "[call][retry]") {
  Fixture f(R"({"defaultTarget": {"methodConfig": [{"idempotent": false,
      "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.1s"}}]}})");
  ScriptedCall call(*f.method);
  call.Start();
  call.Answer(StatusCode::kUnavailable);
  REQUIRE(call.result);
  CHECK(call.attempt_times.size() == 1);
}

TEST_CASE("an attempt cut by its per-attempt timeout is retried within the deadline",
          "[call][deadline]") {
  Fixture f(R"({"defaultTarget": {"methodConfig": [{"timeout": "1s", "perAttemptTimeout": "0.2s",
      "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.01s"}}]}})");
  f.env.random().Push(0.0);
  ScriptedCall call(*f.method);
  const absl::Time start = f.env.Now();
  call.Start();
  CHECK(call.attempt_deadlines[0] == start + absl::Milliseconds(200));
  f.env.Advance(absl::Milliseconds(200));
  call.Answer(StatusCode::kDeadlineExceeded);
  f.env.Advance(absl::ZeroDuration());
  REQUIRE(call.attempt_in_flight);
  call.Answer(StatusCode::kOk);
  CHECK(call.result->ok());
}

TEST_CASE("an exhausted retry budget ends the call with its own outcome", "[call][budget]") {
  Fixture f(R"({"defaultTarget": {
      "retryBudget": {"ratio": 0, "minRetriesPerSecond": 0.001, "maxTokens": 1},
      "methodConfig": [{"retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.01s"}}]}})");
  f.env.random().Push(0.0);
  ScriptedCall first(*f.method);
  first.Start();
  first.Answer(StatusCode::kUnavailable);
  f.env.Advance(absl::ZeroDuration());
  first.Answer(StatusCode::kUnavailable);  // The only token was spent on the first retry.
  REQUIRE(first.result);
  CHECK(first.attempt_times.size() == 2);
  CHECK(f.Calls("budget_exhausted") == 1);
  CHECK(f.Metric("resilience_retry_budget_tokens") == Approx(0));
}

TEST_CASE("every call deposits into the retry budget", "[call][budget]") {
  Fixture f(R"({"defaultTarget": {
      "retryBudget": {"ratio": 0.5, "minRetriesPerSecond": 0, "maxTokens": 1},
      "methodConfig": [{"retryPolicy": {"maxAttempts": 2, "initialBackoff": "0.01s"}}]}})");
  f.env.random().Push(0.0);
  ScriptedCall spender(*f.method);
  spender.Start();
  spender.Answer(StatusCode::kUnavailable);  // The retry spends the full bucket's token.
  f.env.Advance(absl::ZeroDuration());
  spender.Answer(StatusCode::kOk);
  CHECK(f.Metric("resilience_retry_budget_tokens") == Approx(0));
  ScriptedCall depositor(*f.method);
  depositor.Start();
  depositor.Answer(StatusCode::kOk);
  CHECK(f.Metric("resilience_retry_budget_tokens") == Approx(0.5));
  // With its own deposit, the next call has the token its retry needs.
  ScriptedCall retried(*f.method);
  retried.Start();
  retried.Answer(StatusCode::kUnavailable);
  f.env.Advance(absl::ZeroDuration());
  REQUIRE_FALSE(retried.result);
  retried.Answer(StatusCode::kOk);
  CHECK(retried.result->ok());
}

TEST_CASE("attempts stay within (1 + ratio) x calls plus the floor when everything fails",
          "[call][budget]") {
  Fixture f(R"({"defaultTarget": {
      "retryBudget": {"ratio": 0.1, "minRetriesPerSecond": 1, "maxTokens": 5},
      "methodConfig": [{"retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.001s"}}]}})");
  f.env.random().Push(0.0);
  const int kCalls = 500;
  for (int i = 0; i < kCalls; ++i) {
    ScriptedCall call(*f.method);
    call.Start();
    while (!call.result) {
      call.Answer(StatusCode::kUnavailable);
      f.env.Advance(absl::Milliseconds(1));
    }
  }
  const double attempts = f.Metric("resilience_attempts_total");
  const double elapsed_seconds =
      absl::ToDoubleSeconds(f.env.Now() - absl::FromUnixSeconds(1'700'000'000));
  CHECK(attempts <= (1 + 0.1) * kCalls + 5 + elapsed_seconds * 1 + 1);
  CHECK(attempts > kCalls);  // Some retries did happen.
}

TEST_CASE("the breaker rejects fast and stops retries once it opens", "[call][breaker]") {
  Fixture f(R"({"defaultTarget": {
      "circuitBreaker": {"slidingWindowSize": 4, "minimumNumberOfCalls": 4,
                         "failureRateThreshold": 50, "waitDurationInOpenState": "5s"},
      "methodConfig": [{"retryPolicy": {"maxAttempts": 10, "initialBackoff": "0.01s"}}]}})");
  for (int i = 0; i < 3; ++i) f.env.random().Push(0.5);
  ScriptedCall call(*f.method);
  call.Start();
  for (int i = 0; i < 3; ++i) {
    call.Answer(StatusCode::kUnavailable);
    f.env.Advance(absl::Milliseconds(10));
  }
  const absl::Time opened = f.env.Now();
  call.Answer(StatusCode::kUnavailable);  // The fourth failure opens the breaker.
  // The retry would be rejected, so the call ends now, with the downstream's error, instead of
  // waiting out the backoff to be turned away.
  REQUIRE(call.result);
  CHECK(f.env.Now() == opened);
  CHECK(call.result->code() == StatusCode::kUnavailable);
  CHECK(call.result->message() == "scripted");
  CHECK(call.attempt_times.size() == 4);
  CHECK(f.Calls("failure") == 1);

  ScriptedCall rejected(*f.method);
  rejected.Start();
  REQUIRE(rejected.result);
  CHECK(rejected.attempt_times.empty());
  CHECK_THAT(std::string(rejected.result->message()),
             Catch::Contains("circuit breaker 'downstream'"));
  CHECK(f.Calls("circuit_open") == 1);
  for (const char* state : {"CLOSED", "OPEN", "HALF_OPEN", "FORCED_OPEN", "DISABLED"}) {
    INFO(state);
    CHECK(testing_support::MetricValue(*f.targets->call_metrics(),
                                       "resilience_circuit_breaker_state",
                                       {{"target", "downstream"}, {"state", state}}) ==
          (std::string(state) == "OPEN" ? 1 : 0));
  }
  CHECK(testing_support::MetricValue(f.registry, "resilience_circuit_breaker_transitions_total",
                                     {{"from", "CLOSED"}, {"to", "OPEN"}}) == 1);
}

TEST_CASE("a retry due after the breaker's open wait is still made, as a probe",
          "[call][breaker]") {
  Fixture f(R"({"defaultTarget": {
      "circuitBreaker": {"slidingWindowSize": 1, "minimumNumberOfCalls": 1,
                         "failureRateThreshold": 50, "waitDurationInOpenState": "0.05s",
                         "permittedNumberOfCallsInHalfOpenState": 1},
      "methodConfig": [{"retryPolicy": {"maxAttempts": 2, "initialBackoff": "1s"}}]}})");
  f.env.random().Push(0.5);  // A 0.5 s backoff: the breaker is half-open by then.
  ScriptedCall call(*f.method);
  call.Start();
  call.Answer(StatusCode::kUnavailable);  // Opens the breaker for 50 ms.
  CHECK_FALSE(call.result);
  f.env.Advance(absl::Milliseconds(500));
  REQUIRE(call.attempt_in_flight);
  call.Answer(StatusCode::kOk);
  REQUIRE(call.result);
  CHECK(call.result->ok());
}

TEST_CASE("a failed half-open probe is not retried", "[call][breaker]") {
  Fixture f(R"({"defaultTarget": {
      "circuitBreaker": {"slidingWindowSize": 1, "minimumNumberOfCalls": 1,
                         "failureRateThreshold": 50, "waitDurationInOpenState": "1s",
                         "permittedNumberOfCallsInHalfOpenState": 3},
      "methodConfig": [{"retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.01s"}}]}})");
  ScriptedCall opener(*f.method);
  opener.Start();
  opener.Answer(StatusCode::kUnavailable);  // Opens the breaker; the retry would be rejected.
  REQUIRE(opener.result);
  f.env.Advance(absl::Seconds(1));
  ScriptedCall probe(*f.method);
  probe.Start();  // The first of three probes.
  probe.Answer(StatusCode::kUnavailable);
  REQUIRE(probe.result);  // Ended at once: two probes are left for other callers.
  CHECK(probe.attempt_times.size() == 1);
  CHECK(probe.result->message() == "scripted");
}

TEST_CASE("call metrics are collected from the pipeline's atomics, and outlive the registry",
          "[call][metrics]") {
  Fixture f(kRetryPolicy);
  CHECK(base::kLatencyBucketsSeconds.size() == LatencyHistogram::kBuckets);
  ScriptedCall call(*f.method);
  call.Start();
  f.env.Advance(absl::Microseconds(700));
  call.Answer(StatusCode::kOk);
  std::shared_ptr<prometheus::Collectable> collectable = f.targets->call_metrics();
  const prometheus::ClientMetric::Histogram* histogram = nullptr;
  const std::vector<prometheus::MetricFamily> families = collectable->Collect();
  for (const prometheus::MetricFamily& family : families) {
    if (family.name == "resilience_call_duration_seconds") {
      REQUIRE(family.metric.size() == 1);
      histogram = &family.metric[0].histogram;
    }
  }
  REQUIRE(histogram != nullptr);
  CHECK(histogram->sample_count == 1);
  CHECK(histogram->sample_sum == Approx(0.0007));
  REQUIRE(histogram->bucket.size() == LatencyHistogram::kBuckets + 1);
  CHECK(histogram->bucket[0].cumulative_count == 0);  // le 0.0005
  CHECK(histogram->bucket[1].cumulative_count == 1);  // le 0.001
  CHECK(histogram->bucket.back().cumulative_count == 1);
  CHECK(std::isinf(histogram->bucket.back().upper_bound));
  f.targets.reset();
  CHECK(collectable->Collect().empty());  // A scrape after the registry is gone finds nothing.
}

TEST_CASE("method names beyond the cap share one 'other' series", "[call][metrics]") {
  Fixture f(kRetryPolicy);
  Target& target = f.targets->GetTarget("downstream");
  for (int i = 0; i < kMaxMethodSeriesPerTarget + 50; ++i) {
    GuardedMethod& method = target.Method(absl::StrCat("/test.v1.Downstream/M", i));
    CHECK(method.policy().max_attempts == 4);  // Every name keeps its policy.
    ScriptedCall call(method);
    call.Start();
    call.Answer(StatusCode::kOk);
  }
  CHECK(target.methods().size() == static_cast<std::size_t>(kMaxMethodSeriesPerTarget));
  CHECK(&target.Method("/test.v1.Downstream/M200") == &target.Method("/test.v1.Downstream/M300"));
  // The fixture's own method took one of the slots: M0 to M98 have theirs, M99 on share.
  CHECK(testing_support::MetricValue(*f.targets->call_metrics(), "resilience_calls_total",
                                     {{"method", "other"}, {"outcome", "success"}}) == 51);
  CHECK(testing_support::MetricValue(
            *f.targets->call_metrics(), "resilience_calls_total",
            {{"method", "/test.v1.Downstream/M0"}, {"outcome", "success"}}) == 1);
}

TEST_CASE("a full bulkhead rejects with RESOURCE_EXHAUSTED and spares the breaker",
          "[call][bulkhead]") {
  Fixture f(R"({"defaultTarget": {"bulkhead": {"maxConcurrentCalls": 1},
      "circuitBreaker": {"slidingWindowSize": 1, "minimumNumberOfCalls": 1}}})");
  ScriptedCall holder(*f.method);
  holder.Start();
  CHECK(f.Metric("resilience_bulkhead_in_flight") == 1);
  ScriptedCall rejected(*f.method);
  rejected.Start();
  REQUIRE(rejected.result);
  CHECK(rejected.result->code() == StatusCode::kResourceExhausted);
  CHECK(f.Calls("bulkhead_full") == 1);
  CHECK(f.targets->GetTarget("downstream").breaker().state() == BreakerState::kClosed);
  holder.Answer(StatusCode::kOk);
  CHECK(f.Metric("resilience_bulkhead_in_flight") == 0);
}

TEST_CASE("a queued call proceeds when the bulkhead frees a slot", "[call][bulkhead]") {
  Fixture f(R"({"defaultTarget": {"bulkhead": {"maxConcurrentCalls": 1,
      "maxWaitDuration": "1s"}}})");
  ScriptedCall holder(*f.method);
  holder.Start();
  ScriptedCall queued(*f.method);
  queued.Start();
  CHECK_FALSE(queued.attempt_in_flight);
  CHECK_FALSE(queued.result);
  holder.Answer(StatusCode::kOk);
  REQUIRE(queued.attempt_in_flight);
  queued.Answer(StatusCode::kOk);
  CHECK(queued.result->ok());
}

// Two calls fail, the breaker judging every failure (window 2, 50 %).
constexpr char kJudgingBreaker[] = R"({"defaultTarget": {
    "circuitBreaker": {"slidingWindowSize": 2, "minimumNumberOfCalls": 2,
                       "failureRateThreshold": 50, "waitDurationInOpenState": "1s",
                       "slowCallDurationThreshold": "0.5s",
                       "permittedNumberOfCallsInHalfOpenState": 1},
    "methodConfig": [{"timeout": "1s", "deadlineMargin": "0.01s",
                      "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.1s",
                                      "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"]}}]}})";

TEST_CASE("a timeout the caller imposed is not the downstream's failure", "[call][deadline]") {
  Fixture f(kJudgingBreaker);
  Target& target = f.targets->GetTarget("downstream");
  // Callers arriving with 150 ms left against a downstream that needs longer: each attempt runs
  // out of the caller's time (140 ms after the margin), never the policy's 1 s.
  for (int i = 0; i < 4; ++i) {
    ScriptedCall call(*f.method);
    call.Start(f.env.Now() + absl::Milliseconds(150));
    f.env.Advance(absl::Milliseconds(140));
    call.Answer(StatusCode::kDeadlineExceeded);
    REQUIRE(call.result);
    CHECK(call.result->code() == StatusCode::kDeadlineExceeded);
    CHECK(call.attempt_times.size() == 1);
  }
  CHECK(f.Calls("deadline_exceeded") == 4);
  CHECK(target.breaker().state() == BreakerState::kClosed);
  CHECK(target.breaker().Snapshot().window.calls == 0);

  // The policy's own timeout running out is the downstream's failure.
  for (int i = 0; i < 2; ++i) {
    ScriptedCall call(*f.method);
    call.Start(f.env.Now() + absl::Seconds(10));
    f.env.Advance(absl::Seconds(1));
    call.Answer(StatusCode::kDeadlineExceeded);
    REQUIRE(call.result);
  }
  CHECK(target.breaker().state() == BreakerState::kOpen);
}

TEST_CASE("a call the caller cut after the slow threshold counts as slow, not failed",
          "[call][deadline]") {
  Fixture f(kJudgingBreaker);
  ScriptedCall call(*f.method);
  call.Start(f.env.Now() + absl::Milliseconds(610));
  f.env.Advance(absl::Milliseconds(600));  // Past the 0.5 s slow threshold.
  call.Answer(StatusCode::kDeadlineExceeded);
  const BreakerSnapshot snapshot = f.targets->GetTarget("downstream").breaker().Snapshot();
  CHECK(snapshot.window.calls == 1);
  CHECK(snapshot.window.failures == 0);
  CHECK(snapshot.window.slow_calls == 1);
}

TEST_CASE("cancelling a call cancels its attempt, sends no retry and spares the breaker",
          "[call][cancel]") {
  Fixture f(kJudgingBreaker);
  Target& target = f.targets->GetTarget("downstream");
  ScriptedCall call(*f.method);
  call.Start();
  call.Cancel();
  CHECK(call.attempts_cancelled == 1);
  call.Answer(StatusCode::kCancelled);  // What gRPC reports for a cancelled attempt.
  REQUIRE(call.result);
  CHECK(call.result->code() == StatusCode::kCancelled);
  CHECK_THAT(std::string(call.result->message()), Catch::Contains("cancelled by its caller"));
  CHECK(call.attempt_times.size() == 1);  // CANCELLED is retryable here, but not now.
  CHECK(f.env.scheduler().pending() == 0);
  CHECK(f.Calls("cancelled") == 1);
  CHECK(target.breaker().Snapshot().window.calls == 0);

  // A CANCELLED that this side did not ask for is the downstream's: judged, and retried.
  f.env.random().Push(0.5);
  ScriptedCall other(*f.method);
  other.Start();
  other.Answer(StatusCode::kCancelled);
  f.env.Advance(absl::Milliseconds(50));
  REQUIRE(other.attempt_in_flight);
  other.Answer(StatusCode::kCancelled);
  CHECK(target.breaker().state() == BreakerState::kOpen);
}

TEST_CASE("an attempt that fails on its own after the cancel is judged, and not retried",
          "[call][cancel]") {
  Fixture f(kJudgingBreaker);
  ScriptedCall call(*f.method);
  call.Start();
  call.Cancel();
  call.Answer(StatusCode::kUnavailable);  // Failed before the cancel reached it.
  REQUIRE(call.result);
  CHECK(call.result->code() == StatusCode::kCancelled);
  CHECK(call.attempt_times.size() == 1);
  CHECK(f.targets->GetTarget("downstream").breaker().Snapshot().window.failures == 1);
}

TEST_CASE("a call cancelled while waiting for its retry never sends it", "[call][cancel]") {
  Fixture f(kJudgingBreaker);
  f.env.random().Push(0.5);
  ScriptedCall call(*f.method);
  call.Start();
  call.Answer(StatusCode::kUnavailable);
  REQUIRE(f.env.scheduler().pending() == 1);
  call.Cancel();
  CHECK(call.attempts_cancelled == 0);  // Nothing in flight.
  f.env.Advance(absl::Milliseconds(50));
  REQUIRE(call.result);
  CHECK(call.result->code() == StatusCode::kCancelled);
  CHECK(call.attempt_times.size() == 1);
  CHECK(f.Metric("resilience_retries_total") == 0);
}

TEST_CASE("a call cancelled before it starts sends nothing", "[call][cancel]") {
  Fixture f(kJudgingBreaker);
  ScriptedCall call(*f.method);
  call.Cancel();
  call.Start();
  REQUIRE(call.result);
  CHECK(call.result->code() == StatusCode::kCancelled);
  CHECK(call.attempt_times.empty());
}

TEST_CASE("after a retry at the server's pushback delay the backoff starts again",
          "[call][pushback]") {
  Fixture f(kRetryPolicy);  // Backoff 100 ms doubling; four attempts.
  for (int i = 0; i < 3; ++i) f.env.random().Push(0.5);
  ScriptedCall call(*f.method);
  const absl::Time start = f.env.Now();
  call.Start();
  call.Answer(StatusCode::kUnavailable);  // First retry: 0.5 x 100 ms.
  f.env.Advance(absl::Milliseconds(50));
  call.Answer(StatusCode::kUnavailable, ParsePushback("300"));
  f.env.Advance(absl::Milliseconds(300));
  call.Answer(StatusCode::kUnavailable);  // 0.5 x 100 ms again, not 0.5 x 400 ms.
  f.env.Advance(absl::Milliseconds(50));
  REQUIRE(call.attempt_in_flight);
  CHECK(call.attempt_times == std::vector<absl::Time>{start, start + absl::Milliseconds(50),
                                                      start + absl::Milliseconds(350),
                                                      start + absl::Milliseconds(400)});
  call.Answer(StatusCode::kOk);
}

TEST_CASE("no retry waits for a half-open breaker whose probe slots are all taken",
          "[call][breaker][half-open]") {
  Fixture f(kJudgingBreaker);
  f.env.random().Push(0.5);
  ScriptedCall slow(*f.method);  // Sent while the breaker is closed.
  slow.Start();
  for (int i = 0; i < 2; ++i) {  // Two other calls fail and open the breaker.
    ScriptedCall failing(*f.method);
    failing.Start();
    failing.Answer(StatusCode::kInternal);
  }
  f.env.Advance(absl::Seconds(1));
  ScriptedCall probe(*f.method);
  probe.Start();  // Takes the only probe slot.
  REQUIRE(probe.attempt_in_flight);
  slow.Answer(StatusCode::kUnavailable);  // Retryable, but the retry would be turned away.
  REQUIRE(slow.result);
  CHECK(slow.result->code() == StatusCode::kUnavailable);
  CHECK(slow.result->message() == "scripted");
  CHECK(f.env.scheduler().pending() == 0);
  probe.Answer(StatusCode::kOk);
}

TEST_CASE("shutdown ends a call waiting for its retry at once, with CANCELLED",
          "[call][shutdown]") {
  Fixture f(kRetryPolicy);
  f.env.random().Push(0.5);
  ScriptedCall call(*f.method);
  call.Start();
  call.Answer(StatusCode::kUnavailable);
  REQUIRE(f.env.scheduler().pending() == 1);
  f.targets->Shutdown();
  REQUIRE(call.result);
  CHECK(call.result->code() == StatusCode::kCancelled);
  CHECK_THAT(std::string(call.result->message()), Catch::Contains("shutting down"));
  CHECK(call.attempt_times.size() == 1);
  CHECK(f.env.scheduler().pending() == 0);  // Nothing left that points at the call.
  CHECK(f.Calls("cancelled") == 1);

  ScriptedCall late(*f.method);  // A call started after the shutdown sends nothing.
  late.Start();
  REQUIRE(late.result);
  CHECK(late.result->code() == StatusCode::kCancelled);
  CHECK(late.attempt_times.empty());
}

TEST_CASE("shutdown ends queued calls and waits for the attempts in flight", "[call][shutdown]") {
  Fixture f(R"({"defaultTarget": {"bulkhead": {"maxConcurrentCalls": 1,
                                                "maxWaitDuration": "10s"}}})");
  ScriptedCall holder(*f.method);
  holder.Start();
  REQUIRE(holder.attempt_in_flight);
  ScriptedCall queued(*f.method);
  queued.Start();
  REQUIRE_FALSE(queued.result);
  std::atomic<bool> shut_down{false};
  std::thread shutdown([&] {
    f.targets->Shutdown();
    shut_down = true;
  });
  // The queued call ends at once; the shutdown then waits for the holder's attempt.
  absl::SleepFor(absl::Milliseconds(50));
  CHECK_FALSE(shut_down.load());
  holder.Answer(StatusCode::kOk);
  shutdown.join();
  REQUIRE(queued.result);
  CHECK(queued.result->code() == StatusCode::kCancelled);
  CHECK(queued.attempt_times.empty());
  REQUIRE(holder.result);
  CHECK(holder.result->ok());  // An attempt in flight keeps its answer.
  CHECK(f.env.scheduler().pending() == 0);
}

TEST_CASE("adaptive throttling rejects locally after the breaker, before the bulkhead",
          "[call][throttle]") {
  Fixture f(R"({"defaultTarget": {
      "adaptiveThrottling": {"k": 2, "window": "60s"},
      "bulkhead": {"maxConcurrentCalls": 10},
      "circuitBreaker": {"slidingWindowSize": 100, "minimumNumberOfCalls": 100,
                         "failureStatusCodes": ["UNAVAILABLE"]}}})");
  Target& target = f.targets->GetTarget("downstream");
  // No draw while the counts build up: the probability is recomputed only every kRefresh.
  for (int i = 0; i < 50; ++i) {  // The backend sheds load: RESOURCE_EXHAUSTED, not a failure here.
    ScriptedCall call(*f.method);
    call.Start();
    call.Answer(StatusCode::kResourceExhausted);
  }
  f.env.Advance(AdaptiveThrottle::kRefresh);
  CHECK(f.Metric("resilience_throttle_probability") > 0.95);
  f.env.random().Push(0.5);
  ScriptedCall throttled(*f.method);
  throttled.Start();
  REQUIRE(throttled.result);
  CHECK(throttled.result->code() == StatusCode::kUnavailable);
  CHECK_THAT(std::string(throttled.result->message()), Catch::Contains("adaptive throttling"));
  CHECK(throttled.attempt_times.empty());
  CHECK(f.Calls("throttled") == 1);
  CHECK(target.bulkhead().in_flight() == 0);
  CHECK(target.breaker().Snapshot().window.calls == 50);  // The throttled call is not judged.
  CHECK(f.Metric("resilience_attempts_total") == 50);
}

TEST_CASE("a half-open probe is never throttled", "[call][throttle][half-open]") {
  Fixture f(R"({"defaultTarget": {
      "adaptiveThrottling": {"k": 2, "window": "60s"},
      "circuitBreaker": {"slidingWindowSize": 10, "minimumNumberOfCalls": 10,
                         "waitDurationInOpenState": "1s",
                         "permittedNumberOfCallsInHalfOpenState": 1}}})");
  for (int i = 0; i < 10; ++i) {  // UNAVAILABLE: rejected by the backend, and failures.
    ScriptedCall call(*f.method);
    call.Start();
    call.Answer(StatusCode::kUnavailable);
  }
  REQUIRE(f.targets->GetTarget("downstream").breaker().state() == BreakerState::kOpen);
  f.env.Advance(absl::Seconds(1));
  f.env.random().Push(0.0);  // Would reject anything the throttle decides on.
  ScriptedCall probe(*f.method);
  probe.Start();
  REQUIRE(probe.attempt_in_flight);
  probe.Answer(StatusCode::kOk);
  CHECK(f.targets->GetTarget("downstream").breaker().state() == BreakerState::kClosed);
}

}  // namespace
}  // namespace resilience
