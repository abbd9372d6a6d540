#include "resilience/guarded_call.h"

#include <algorithm>

namespace resilience {

GuardedCall::GuardedCall(GuardedMethod& method)
    : method_(method), target_(method.target()), environment_(target_.environment()) {}

void GuardedCall::Start(absl::Time parent_deadline) {
  target_.live_calls_.Add(1);
  call_start_ = environment_.clock->Now();
  deadline_ = method_.CallDeadline(call_start_, parent_deadline, deadline_is_callers_);
  RetryBudget& budget = target_.budget();
  if (budget.enabled()) budget.RecordCall();
  Attempt(call_start_);
}

void GuardedCall::Cancel() {
  cancelled_.store(true, std::memory_order_release);
  CancelAttempt();
}

const absl::Status* GuardedCall::StopStatus() const {
  if (cancel_requested()) return &method_.cancelled_status();
  if (target_.shutting_down()) return &method_.shutdown_status();
  return nullptr;
}

void GuardedCall::OnWaitOver() { Attempt(environment_.clock->Now()); }

void GuardedCall::Attempt(absl::Time now) {
  if (const absl::Status* stop = StopStatus()) {
    Finish(*stop, CallOutcome::kCancelled, now);
    return;
  }
  if (now >= deadline_) {
    Finish(method_.deadline_spent_status(), CallOutcome::kDeadlineExceeded, now);
    return;
  }
  CircuitBreaker& breaker = target_.breaker();
  if (!breaker.TryAcquire(permit_, now)) {
    Finish(breaker.rejection_status(), CallOutcome::kRejectedByBreaker, now);
    return;
  }
  // A half-open probe is always sent: it is how the breaker learns that the target is back.
  if (!permit_.probe && !target_.throttle().Admit(now)) {
    breaker.Release(permit_);  // Never sent: nothing for the breaker to judge.
    Finish(method_.throttled_status(), CallOutcome::kThrottled, now);
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
  if (const absl::Status* stop = StopStatus()) {
    Finish(*stop, CallOutcome::kCancelled, now);
    return;
  }
  Finish(method_.bulkhead_full_status(), CallOutcome::kRejectedByBulkhead, now);
}

void GuardedCall::Send(absl::Time now) {
  if (const absl::Status* stop = StopStatus()) {  // Stopped while waiting for the bulkhead.
    target_.bulkhead().Release();
    target_.breaker().Release(permit_);
    Finish(*stop, CallOutcome::kCancelled, now);
    return;
  }
  MethodMetrics& metrics = method_.metrics();
  metrics.attempts.Increment();
  if (attempts_ > 0) metrics.retries.Increment();
  ++attempts_;
  attempt_start_ = now;
  const absl::Time per_attempt_end = attempt_start_ + method_.policy().per_attempt_timeout;
  attempt_deadline_is_callers_ = deadline_is_callers_ && deadline_ < per_attempt_end;
  attempt_deadline_ = std::min(deadline_, per_attempt_end);
  StartAttempt(attempt_deadline_);
}

bool GuardedCall::CutByCaller(absl::StatusCode code, absl::Time now) const {
  if (code == absl::StatusCode::kCancelled) return cancel_requested();
  return code == absl::StatusCode::kDeadlineExceeded && attempt_deadline_is_callers_ &&
         now >= attempt_deadline_;
}

void GuardedCall::FinishAttempt(const absl::Status& status, Pushback pushback) {
  const absl::Time now = environment_.clock->Now();
  const absl::Duration elapsed = now - attempt_start_;
  target_.bulkhead().Release();
  target_.throttle().RecordOutcome(status.code(), now);
  if (!status.ok() && CutByCaller(status.code(), now)) {
    target_.breaker().RecordCallerCut(permit_, elapsed, now);
  } else {
    target_.breaker().Record(permit_, status.code(), elapsed, now);
  }
  method_.metrics().attempt_duration.Observe(elapsed);
  if (status.ok()) {
    Finish(status, CallOutcome::kSuccess, now);
    return;
  }
  if (const absl::Status* stop = StopStatus()) {
    Finish(*stop, CallOutcome::kCancelled, now);
    return;
  }
  CallOutcome outcome;
  if (!ScheduleRetry(status, pushback, now, outcome)) {
    Finish(outcome == CallOutcome::kCancelled ? method_.shutdown_status() : status, outcome, now);
  }
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
  const bool pushed_back = pushback.kind == Pushback::Kind::kDelay;
  const absl::Duration delay =
      pushed_back ? pushback.delay
                  : FullJitterBackoff(policy.backoff, backoff_step_ + 1, *environment_.random);
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
  // gRFC A6: after a retry at the server's delay, the next backoff starts from the beginning.
  backoff_step_ = pushed_back ? 0 : backoff_step_ + 1;
  if (!target_.ScheduleWait(now + delay, *this)) {  // Shutting down since the check above.
    outcome = CallOutcome::kCancelled;
    return false;
  }
  return true;
}

void GuardedCall::Finish(const absl::Status& status, CallOutcome outcome, absl::Time now) {
  MethodMetrics& metrics = method_.metrics();
  metrics.calls[static_cast<std::size_t>(outcome)].Increment();
  metrics.call_duration.Observe(now - call_start_);
  Target& target = target_;
  OnDone(status);  // May destroy this object, and `status` may belong to the target: the target
                   // stays alive until the count below says the call is over.
  target.live_calls_.Add(-1);
}

}  // namespace resilience
