#include "resilience/guarded_call.h"

#include <algorithm>

namespace resilience {

GuardedCall::GuardedCall(GuardedMethod& method)
    : method_(method), target_(method.target()), environment_(target_.environment()) {}

void GuardedCall::Start(absl::Time parent_deadline) {
  const MethodPolicy& policy = method_.policy();
  call_start_ = environment_.clock->Now();
  deadline_ = std::min(call_start_ + policy.timeout, parent_deadline - policy.deadline_margin);
  RetryBudget& budget = target_.budget();
  if (budget.enabled()) budget.RecordCall();
  Attempt(call_start_);
}

void GuardedCall::Attempt(absl::Time now) {
  if (now >= deadline_) {
    Finish(method_.deadline_spent_status(), CallOutcome::kDeadlineExceeded, now);
    return;
  }
  CircuitBreaker& breaker = target_.breaker();
  if (!breaker.TryAcquire(permit_, now)) {
    Finish(breaker.rejection_status(), CallOutcome::kRejectedByBreaker, now);
    return;
  }
  switch (target_.bulkhead().TryAcquire(this, deadline_)) {
    case Bulkhead::Result::kAcquired:
      Send(now);
      return;
    case Bulkhead::Result::kQueued:
      return;  // OnBulkheadDecision continues.
    case Bulkhead::Result::kRejected:
      breaker.Release(permit_);
      Finish(method_.bulkhead_full_status(), CallOutcome::kRejectedByBulkhead, now);
      return;
  }
}

void GuardedCall::OnBulkheadDecision(bool acquired) {
  const absl::Time now = environment_.clock->Now();
  if (acquired) {
    Send(now);
    return;
  }
  target_.breaker().Release(permit_);
  Finish(method_.bulkhead_full_status(), CallOutcome::kRejectedByBulkhead, now);
}

void GuardedCall::Send(absl::Time now) {
  MethodMetrics& metrics = method_.metrics();
  metrics.attempts.Increment();
  if (attempts_ > 0) metrics.retries.Increment();
  ++attempts_;
  attempt_start_ = now;
  attempt_deadline_ = std::min(deadline_, attempt_start_ + method_.policy().per_attempt_timeout);
  StartAttempt(attempt_deadline_);
}

void GuardedCall::FinishAttempt(const absl::Status& status, Pushback pushback) {
  const absl::Time now = environment_.clock->Now();
  const absl::Duration elapsed = now - attempt_start_;
  target_.bulkhead().Release();
  target_.breaker().Record(permit_, status.code(), elapsed, now);
  method_.metrics().attempt_duration.Observe(elapsed);
  if (status.ok()) {
    Finish(status, CallOutcome::kSuccess, now);
    return;
  }
  CallOutcome outcome;
  if (!ScheduleRetry(status, pushback, now, outcome)) Finish(status, outcome, now);
}

bool GuardedCall::ScheduleRetry(const absl::Status& status, Pushback pushback, absl::Time now,
                                CallOutcome& outcome) {
  const MethodPolicy& policy = method_.policy();
  const absl::StatusCode code = status.code();
  outcome = code == absl::StatusCode::kDeadlineExceeded ? CallOutcome::kDeadlineExceeded
                                                        : CallOutcome::kFailure;
  if (attempts_ >= policy.max_attempts || !policy.idempotent) return false;
  // A failed half-open probe is the breaker's answer; retrying it would spend the probes the
  // breaker allows a recovering downstream, and the caller's time, on the same question.
  if (permit_.probe) return false;
  if (pushback.kind == Pushback::Kind::kDoNotRetry) return false;
  // An attempt cut short by its own timeout, with call time left, is worth another try.
  const bool attempt_timed_out = code == absl::StatusCode::kDeadlineExceeded &&
                                 attempt_deadline_ < deadline_ && now >= attempt_deadline_;
  const bool retryable =
      attempt_timed_out ||
      (policy.retryable_codes.Contains(code) &&
       (code != absl::StatusCode::kResourceExhausted || pushback.kind == Pushback::Kind::kDelay));
  if (!retryable) return false;
  const absl::Duration delay =
      pushback.kind == Pushback::Kind::kDelay
          ? pushback.delay
          : FullJitterBackoff(policy.backoff, attempts_, *environment_.random);
  // Never wait past the deadline: a retry that could not be sent in time only adds latency.
  if (now + delay >= deadline_) return false;
  // Nor wait for a retry that the breaker (opened by this very failure, say) would turn away:
  // the caller gets the downstream's own error now instead of a rejection after the backoff.
  if (target_.breaker().IsRejecting(now + delay)) return false;
  RetryBudget& budget = target_.budget();
  if (!budget.TryWithdrawRetry()) {
    outcome = CallOutcome::kRetryBudgetExhausted;
    return false;
  }
  environment_.scheduler->RunAt(now + delay, [this] { Attempt(environment_.clock->Now()); });
  return true;
}

void GuardedCall::Finish(const absl::Status& status, CallOutcome outcome, absl::Time now) {
  MethodMetrics& metrics = method_.metrics();
  metrics.calls[static_cast<std::size_t>(outcome)].Increment();
  metrics.call_duration.Observe(now - call_start_);
  OnDone(status);  // Last: may destroy this object.
}

}  // namespace resilience
