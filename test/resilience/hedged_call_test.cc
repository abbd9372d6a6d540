// HedgedCall on the fake clock: when hedges go, which answer wins, what the guards see.
#include "resilience/hedged_call.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "base/testing/fake_environment.h"
#include "testing_support/metrics_reader.h"

namespace resilience {
namespace {

using absl::StatusCode;

constexpr char kMethod[] = "/test.v1.Downstream/Do";

// A hedged call whose attempts the test answers one by one.
class ScriptedHedgedCall final : public HedgedCall {
 public:
  explicit ScriptedHedgedCall(GuardedMethod& method) : HedgedCall(method) {}
  // A test that stops with attempts in flight ends them, so that shutdown does not wait.
  ~ScriptedHedgedCall() override {
    for (int i = 0; i < static_cast<int>(in_flight.size()); ++i) {
      if (in_flight[i]) Answer(i, StatusCode::kCancelled);
    }
  }

  void Answer(int index, StatusCode code, Pushback pushback = {}) {
    REQUIRE(index < static_cast<int>(in_flight.size()));
    REQUIRE(in_flight[index]);
    in_flight[index] = false;
    FinishAttempt(index,
                  code == StatusCode::kOk ? absl::OkStatus() : absl::Status(code, "scripted"),
                  pushback);
  }
  int sent() const { return static_cast<int>(in_flight.size()); }
  bool cancelled(int index) const { return cancel_requests.at(index) > 0; }

  std::vector<bool> in_flight;
  std::vector<absl::Time> sent_at;
  std::vector<absl::Time> deadlines;
  std::vector<int> cancel_requests;
  std::optional<absl::Status> result;
  int winner = -2;
  bool ended = false;

 private:
  void StartAttempt(int index, absl::Time attempt_deadline) override {
    REQUIRE(index == sent());  // Indices come in order.
    in_flight.push_back(true);
    sent_at.push_back(clock().Now());
    deadlines.push_back(attempt_deadline);
    cancel_requests.push_back(0);
  }
  void CancelAttempt(int index) override { ++cancel_requests.at(index); }
  void OnDone(const absl::Status& status, int from) override {
    REQUIRE_FALSE(result.has_value());
    result = status;
    winner = from;
  }
  void OnEnded() override {
    REQUIRE(result.has_value());
    REQUIRE_FALSE(ended);
    ended = true;
  }
};

struct Fixture {
  explicit Fixture(const std::string& target_json) {
    absl::StatusOr<Policy> policy = ParsePolicyJson(R"({"defaultTarget": )" + target_json + "}");
    INFO(policy.status().ToString());
    REQUIRE(policy.ok());
    targets.emplace(*std::move(policy), env.environment(), registry);
    target = &targets->GetTarget("downstream");
    method = &target->Method(kMethod);
  }
  void Advance(absl::Duration by) { env.Advance(by); }
  double Metric(const std::string& name, const std::string& outcome = "") {
    std::map<std::string, std::string> labels = {{"target", "downstream"}};
    if (!outcome.empty()) labels["outcome"] = outcome;
    return testing_support::MetricValue(*targets->call_metrics(), name, labels);
  }

  base::testing::FakeEnvironment env;
  prometheus::Registry registry;
  std::optional<TargetRegistry> targets;
  Target* target = nullptr;
  GuardedMethod* method = nullptr;
};

// The breaker only judges (its window is only read) when the policy configures it.
constexpr char kHedged[] = R"({"methodConfig": [{"timeout": "2s",
    "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0.1s",
                      "nonFatalStatusCodes": ["UNAVAILABLE"]}}],
    "circuitBreaker": {"slidingWindowSize": 10, "minimumNumberOfCalls": 10}})";

TEST_CASE("a hedge goes after the delay, the first success wins and the others are cancelled",
          "[hedging]") {
  Fixture f(kHedged);
  ScriptedHedgedCall call(*f.method);
  const absl::Time start = f.env.Now();
  call.Start();
  REQUIRE(call.sent() == 1);
  f.Advance(absl::Milliseconds(99));
  CHECK(call.sent() == 1);
  f.Advance(absl::Milliseconds(1));
  REQUIRE(call.sent() == 2);
  CHECK(call.sent_at[1] == start + absl::Milliseconds(100));
  CHECK(call.deadlines[1] == start + absl::Seconds(2));  // The call's deadline bounds each.

  call.Answer(1, StatusCode::kOk);
  REQUIRE(call.result);
  CHECK(call.result->ok());
  CHECK(call.winner == 1);
  CHECK(call.cancelled(0));
  CHECK_FALSE(call.ended);  // The loser has not ended yet.
  call.Answer(0, StatusCode::kCancelled);
  CHECK(call.ended);
  f.Advance(absl::Seconds(1));
  CHECK(call.sent() == 2);  // Nothing after the decision.
  CHECK(f.env.scheduler().pending() == 0);

  CHECK(f.Metric("resilience_calls_total", "success") == 1);
  CHECK(f.Metric("resilience_attempts_total") == 2);
  CHECK(f.Metric("resilience_hedges_total") == 1);
  CHECK(f.Metric("resilience_retries_total") == 0);
  // The cancelled loser is the call's doing, not the downstream's: no failure in the window.
  const BreakerSnapshot breaker = f.target->breaker().Snapshot();
  CHECK(breaker.window.failures == 0);
  CHECK(breaker.window.calls == 1);
}

TEST_CASE("an answer within the hedging delay sends no hedge and leaves no timer", "[hedging]") {
  Fixture f(kHedged);
  ScriptedHedgedCall call(*f.method);
  call.Start();
  f.Advance(absl::Milliseconds(50));
  call.Answer(0, StatusCode::kOk);
  CHECK(call.ended);
  CHECK(call.winner == 0);
  CHECK(f.env.scheduler().pending() == 0);
  f.Advance(absl::Seconds(1));
  CHECK(call.sent() == 1);
  CHECK(f.Metric("resilience_hedges_total") == 0);
}

TEST_CASE("hedges keep going each delay up to maxAttempts", "[hedging]") {
  Fixture f(kHedged);
  ScriptedHedgedCall call(*f.method);
  call.Start();
  f.Advance(absl::Milliseconds(100));
  f.Advance(absl::Milliseconds(100));
  REQUIRE(call.sent() == 3);
  f.Advance(absl::Milliseconds(500));
  CHECK(call.sent() == 3);          // maxAttempts in all.
  call.Answer(0, StatusCode::kOk);  // The slow first one still wins if it answers first.
  CHECK(call.winner == 0);
  CHECK(call.cancelled(1));
  CHECK(call.cancelled(2));
  call.Answer(1, StatusCode::kCancelled);
  call.Answer(2, StatusCode::kCancelled);
  CHECK(call.ended);
}

TEST_CASE("a fatal failure ends the call at once and cancels the others", "[hedging]") {
  Fixture f(kHedged);
  ScriptedHedgedCall call(*f.method);
  call.Start();
  f.Advance(absl::Milliseconds(100));
  REQUIRE(call.sent() == 2);
  call.Answer(1, StatusCode::kInvalidArgument);
  REQUIRE(call.result);
  CHECK(call.result->code() == StatusCode::kInvalidArgument);
  CHECK(call.winner == 1);
  CHECK(call.cancelled(0));
  call.Answer(0, StatusCode::kCancelled);
  CHECK(call.ended);
  CHECK(f.Metric("resilience_calls_total", "failure") == 1);
}

TEST_CASE("a non-fatal failure sends the next hedge at once, and the last failure ends the call",
          "[hedging]") {
  Fixture f(kHedged);
  ScriptedHedgedCall call(*f.method);
  const absl::Time start = f.env.Now();
  call.Start();
  f.Advance(absl::Milliseconds(10));
  call.Answer(0, StatusCode::kUnavailable);
  REQUIRE(call.sent() == 2);
  CHECK(call.sent_at[1] == start + absl::Milliseconds(10));  // Not at 100 ms.
  CHECK_FALSE(call.result);
  // The next one waits the full delay from the hedge just sent, not from the first attempt.
  f.Advance(absl::Milliseconds(95));
  CHECK(call.sent() == 2);
  f.Advance(absl::Milliseconds(5));
  REQUIRE(call.sent() == 3);
  call.Answer(2, StatusCode::kUnavailable);
  CHECK_FALSE(call.result);  // Attempt 1 is still out.
  call.Answer(1, StatusCode::kUnavailable);
  REQUIRE(call.result);
  CHECK(call.result->code() == StatusCode::kUnavailable);
  CHECK(call.ended);
  CHECK(f.Metric("resilience_calls_total", "failure") == 1);
  CHECK(f.Metric("resilience_attempts_total") == 3);
}

TEST_CASE("an attempt cut by its per-attempt timeout hedges at once", "[hedging]") {
  Fixture f(R"({"methodConfig": [{"timeout": "2s", "perAttemptTimeout": "0.05s",
      "hedgingPolicy": {"maxAttempts": 2, "hedgingDelay": "0.5s"}}]})");
  ScriptedHedgedCall call(*f.method);
  const absl::Time start = f.env.Now();
  call.Start();
  CHECK(call.deadlines[0] == start + absl::Milliseconds(50));
  f.Advance(absl::Milliseconds(50));
  call.Answer(0, StatusCode::kDeadlineExceeded);
  REQUIRE(call.sent() == 2);  // DEADLINE_EXCEEDED is not listed, but this was a slow answer.
  call.Answer(1, StatusCode::kOk);
  CHECK(call.result->ok());
}

TEST_CASE("server pushback delays the next hedge, and 'do not retry' stops hedging", "[hedging]") {
  Fixture f(kHedged);
  {
    ScriptedHedgedCall call(*f.method);
    const absl::Time start = f.env.Now();
    call.Start();
    call.Answer(0, StatusCode::kUnavailable, Pushback{Pushback::Kind::kDelay, absl::Seconds(1)});
    CHECK(call.sent() == 1);
    CHECK_FALSE(call.result);  // Waiting for the pushed-back hedge.
    f.Advance(absl::Milliseconds(999));
    CHECK(call.sent() == 1);
    f.Advance(absl::Milliseconds(1));
    REQUIRE(call.sent() == 2);
    CHECK(call.sent_at[1] == start + absl::Seconds(1));
    call.Answer(1, StatusCode::kOk);
    CHECK(call.ended);
  }
  {
    ScriptedHedgedCall call(*f.method);
    call.Start();
    f.Advance(absl::Milliseconds(100));
    REQUIRE(call.sent() == 2);
    call.Answer(1, StatusCode::kUnavailable, Pushback{Pushback::Kind::kDoNotRetry});
    f.Advance(absl::Seconds(1));
    CHECK(call.sent() == 2);   // No third attempt.
    CHECK_FALSE(call.result);  // The first may still win.
    call.Answer(0, StatusCode::kOk);
    CHECK(call.result->ok());
    CHECK(call.ended);
  }
}

TEST_CASE("a pushback past the deadline ends the call with the failure", "[hedging]") {
  Fixture f(kHedged);
  ScriptedHedgedCall call(*f.method);
  call.Start();
  call.Answer(0, StatusCode::kUnavailable, Pushback{Pushback::Kind::kDelay, absl::Seconds(5)});
  REQUIRE(call.result);
  CHECK(call.result->code() == StatusCode::kUnavailable);
  CHECK(call.ended);
  CHECK(f.env.scheduler().pending() == 0);
}

TEST_CASE("every attempt at once with a zero hedging delay", "[hedging]") {
  Fixture f(R"({"methodConfig": [{"hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0s"}}]})");
  ScriptedHedgedCall call(*f.method);
  call.Start();
  REQUIRE(call.sent() == 3);
  call.Answer(2, StatusCode::kOk);
  CHECK(call.winner == 2);
  call.Answer(0, StatusCode::kCancelled);
  call.Answer(1, StatusCode::kOk);  // A loser that answered before its cancellation arrived.
  CHECK(call.ended);
  CHECK(call.result->ok());
}

TEST_CASE("each hedge spends a retry budget token, and an empty budget stops hedging",
          "[hedging][budget]") {
  Fixture f(R"({"methodConfig": [{"timeout": "2s",
      "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0.1s"}}],
    "retryBudget": {"ratio": 0.01, "minRetriesPerSecond": 0.001, "maxTokens": 1}})");
  ScriptedHedgedCall call(*f.method);
  call.Start();
  f.Advance(absl::Milliseconds(100));
  REQUIRE(call.sent() == 2);  // The one token.
  f.Advance(absl::Milliseconds(100));
  CHECK(call.sent() == 2);                        // No token for the third.
  call.Answer(0, StatusCode::kDeadlineExceeded);  // Fatal: not listed, not a per-attempt cut.
  call.Answer(1, StatusCode::kCancelled);
  CHECK(call.result->code() == StatusCode::kDeadlineExceeded);
  CHECK(f.Metric("resilience_calls_total", "deadline_exceeded") == 1);
}

TEST_CASE("a call that ends with failures after the budget refused a hedge says so",
          "[hedging][budget]") {
  Fixture f(R"({"methodConfig": [{"timeout": "2s",
      "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0.1s",
                        "nonFatalStatusCodes": ["UNAVAILABLE"]}}],
    "retryBudget": {"ratio": 0.01, "minRetriesPerSecond": 0.001, "maxTokens": 1}})");
  ScriptedHedgedCall call(*f.method);
  call.Start();
  call.Answer(0, StatusCode::kUnavailable);
  REQUIRE(call.sent() == 2);
  call.Answer(1, StatusCode::kUnavailable);
  REQUIRE(call.result);
  CHECK(call.result->code() == StatusCode::kUnavailable);
  CHECK(f.Metric("resilience_calls_total", "budget_exhausted") == 1);
}

TEST_CASE("a hedge takes a free bulkhead slot or is not sent, never queueing",
          "[hedging][bulkhead]") {
  Fixture f(R"({"methodConfig": [{"timeout": "2s",
      "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0.1s"}}],
    "bulkhead": {"maxConcurrentCalls": 1, "maxWaitDuration": "1s"}})");
  ScriptedHedgedCall call(*f.method);
  call.Start();
  f.Advance(absl::Milliseconds(100));
  CHECK(call.sent() == 1);  // The slot is the first attempt's.
  f.Advance(absl::Milliseconds(500));
  CHECK(call.sent() == 1);  // Hedging stopped for this call.
  CHECK(f.target->bulkhead().in_flight() == 1);
  call.Answer(0, StatusCode::kOk);
  CHECK(call.ended);
  CHECK(f.target->bulkhead().in_flight() == 0);
}

TEST_CASE("the first attempt of a hedged call may queue for the bulkhead", "[hedging][bulkhead]") {
  Fixture f(R"({"methodConfig": [{"timeout": "2s",
      "hedgingPolicy": {"maxAttempts": 2, "hedgingDelay": "0.1s"}}],
    "bulkhead": {"maxConcurrentCalls": 1, "maxWaitDuration": "1s"}})");
  ScriptedHedgedCall holder(*f.method);
  holder.Start();
  ScriptedHedgedCall queued(*f.method);
  queued.Start();
  CHECK(queued.sent() == 0);
  f.Advance(absl::Milliseconds(300));
  holder.Answer(0, StatusCode::kOk);  // Frees the slot: the queued call sends.
  REQUIRE(queued.sent() == 1);
  queued.Answer(0, StatusCode::kOk);
  CHECK(queued.ended);
}

TEST_CASE("an open breaker rejects the call, and a half-open probe is not hedged",
          "[hedging][breaker]") {
  Fixture f(R"({"methodConfig": [{"timeout": "2s",
      "hedgingPolicy": {"maxAttempts": 2, "hedgingDelay": "0.1s"}}],
    "circuitBreaker": {"slidingWindowSize": 2, "minimumNumberOfCalls": 2,
                       "failureRateThreshold": 50, "waitDurationInOpenState": "1s",
                       "permittedNumberOfCallsInHalfOpenState": 1}})");
  for (int i = 0; i < 2; ++i) {
    ScriptedHedgedCall failing(*f.method);
    failing.Start();
    failing.Answer(0, StatusCode::kInternal);
  }
  REQUIRE(f.target->breaker().state() == BreakerState::kOpen);
  {
    ScriptedHedgedCall rejected(*f.method);
    rejected.Start();
    REQUIRE(rejected.result);
    CHECK(rejected.result->code() == StatusCode::kUnavailable);
    CHECK(rejected.winner == -1);
    CHECK(rejected.ended);
    CHECK(rejected.sent() == 0);
  }
  f.Advance(absl::Seconds(1));
  ScriptedHedgedCall probe(*f.method);
  probe.Start();
  REQUIRE(probe.sent() == 1);
  CHECK(f.target->breaker().state() == BreakerState::kHalfOpen);
  f.Advance(absl::Milliseconds(500));
  CHECK(probe.sent() == 1);
  probe.Answer(0, StatusCode::kOk);
  CHECK(f.target->breaker().state() == BreakerState::kClosed);
}

TEST_CASE("a breaker opened by another call stops the hedges of a call in flight",
          "[hedging][breaker]") {
  Fixture f(R"({"methodConfig": [{"timeout": "2s",
      "hedgingPolicy": {"maxAttempts": 2, "hedgingDelay": "0.1s"}}],
    "circuitBreaker": {"slidingWindowSize": 2, "minimumNumberOfCalls": 2,
                       "failureRateThreshold": 50, "waitDurationInOpenState": "10s"}})");
  ScriptedHedgedCall slow(*f.method);
  slow.Start();
  for (int i = 0; i < 2; ++i) {
    ScriptedHedgedCall failing(*f.method);
    failing.Start();
    failing.Answer(0, StatusCode::kInternal);
  }
  REQUIRE(f.target->breaker().state() == BreakerState::kOpen);
  f.Advance(absl::Milliseconds(100));
  CHECK(slow.sent() == 1);
  slow.Answer(0, StatusCode::kOk);
  CHECK(slow.result->ok());
}

TEST_CASE("a cancelled hedged call sends nothing more and ends CANCELLED", "[hedging][cancel]") {
  Fixture f(kHedged);
  ScriptedHedgedCall call(*f.method);
  call.Start();
  f.Advance(absl::Milliseconds(100));
  REQUIRE(call.sent() == 2);
  call.Cancel();
  CHECK(call.cancelled(0));
  CHECK(call.cancelled(1));
  f.Advance(absl::Milliseconds(100));
  CHECK(call.sent() == 2);
  call.Answer(0, StatusCode::kCancelled);
  CHECK_FALSE(call.result);  // Attempt 1 might still have succeeded.
  call.Answer(1, StatusCode::kCancelled);
  REQUIRE(call.result);
  CHECK(call.result->code() == StatusCode::kCancelled);
  CHECK(call.ended);
  CHECK(f.Metric("resilience_calls_total", "cancelled") == 1);
  CHECK(f.target->breaker().Snapshot().window.calls == 0);  // Neither attempt is judged.
}

TEST_CASE("shutdown ends a call waiting for a pushed-back hedge at once", "[hedging][shutdown]") {
  Fixture f(kHedged);
  ScriptedHedgedCall call(*f.method);
  call.Start();
  call.Answer(0, StatusCode::kUnavailable, Pushback{Pushback::Kind::kDelay, absl::Seconds(1)});
  REQUIRE_FALSE(call.result);
  f.target->Shutdown();  // Returns: nothing of the call is left.
  REQUIRE(call.result);
  CHECK(call.result->code() == StatusCode::kCancelled);
  CHECK(call.ended);
  CHECK(f.env.scheduler().pending() == 0);
}

TEST_CASE("the caller's own deadline cuts every attempt without blaming the downstream",
          "[hedging][deadline]") {
  Fixture f(kHedged);
  ScriptedHedgedCall call(*f.method);
  const absl::Time start = f.env.Now();
  call.Start(start + absl::Milliseconds(150));
  f.Advance(absl::Milliseconds(100));
  REQUIRE(call.sent() == 2);
  CHECK(call.deadlines[1] == start + absl::Milliseconds(150));
  f.Advance(absl::Milliseconds(50));
  call.Answer(0, StatusCode::kDeadlineExceeded);
  REQUIRE(call.result);
  CHECK(call.result->code() == StatusCode::kDeadlineExceeded);
  call.Answer(1, StatusCode::kCancelled);
  CHECK(call.ended);
  CHECK(f.target->breaker().Snapshot().window.calls == 0);  // Neither attempt is judged.
}

}  // namespace
}  // namespace resilience
