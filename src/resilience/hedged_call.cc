#include "resilience/hedged_call.h"

#include <algorithm>

namespace resilience {

HedgedCall::HedgedCall(GuardedMethod& method)
    : method_(method),
      target_(method.target()),
      environment_(target_.environment()),
      hedging_(method.policy().hedging) {}

int HedgedCall::attempts() const {
  base::MutexLock lock(&mutex_);
  return launched_;
}

const absl::Status* HedgedCall::StopStatus() const {
  if (cancel_requested()) return &method_.cancelled_status();
  if (target_.shutting_down()) return &method_.shutdown_status();
  return nullptr;
}

void HedgedCall::Start(absl::Time parent_deadline) {
  target_.live_calls_.Add(1);
  call_start_ = environment_.clock->Now();
  deadline_ = method_.CallDeadline(call_start_, parent_deadline, deadline_is_callers_);
  RetryBudget& budget = target_.budget();
  if (budget.enabled()) budget.RecordCall();
  {
    base::MutexLock lock(&mutex_);
    busy_ = 2;  // This entry point, and the first attempt's reservation.
    reserved_ = 1;
    unsent_ = 1;
  }
  SendFirst(call_start_);
  ReleaseUnit();
}

void HedgedCall::Cancel() {
  cancelled_.store(true, std::memory_order_release);
  std::uint32_t in_flight = 0;
  {
    base::MutexLock lock(&mutex_);
    for (int i = 0; i < reserved_; ++i) {
      if (!attempts_[i].in_flight) continue;
      attempts_[i].cut_by_call = true;
      in_flight |= 1u << i;
    }
  }
  for (int i = 0; i < kMaxAttempts; ++i) {
    if ((in_flight & (1u << i)) != 0) CancelAttempt(i);
  }
}

void HedgedCall::SendFirst(absl::Time now) {
  if (const absl::Status* stop = StopStatus()) {
    Refuse(0, *stop, CallOutcome::kCancelled, now);
    return;
  }
  if (now >= deadline_) {
    Refuse(0, method_.deadline_spent_status(), CallOutcome::kDeadlineExceeded, now);
    return;
  }
  CircuitBreaker& breaker = target_.breaker();
  CircuitBreaker::Permit permit;
  if (!breaker.TryAcquire(permit, now)) {
    Refuse(0, breaker.rejection_status(), CallOutcome::kRejectedByBreaker, now);
    return;
  }
  if (!permit.probe && !target_.throttle().Admit(now)) {
    breaker.Release(permit);
    Refuse(0, method_.throttled_status(), CallOutcome::kThrottled, now);
    return;
  }
  {
    base::MutexLock lock(&mutex_);
    attempts_[0].permit = permit;
  }
  switch (target_.bulkhead().TryAcquire(this, deadline_)) {
    case Bulkhead::Result::kAcquired:
      Launch(0, now);
      return;
    case Bulkhead::Result::kQueued:
      return;  // OnBulkheadDecision continues, holding the reservation.
    case Bulkhead::Result::kRejected:
      breaker.Release(permit);
      Refuse(0, method_.bulkhead_full_status(), CallOutcome::kRejectedByBulkhead, now);
      return;
  }
}

void HedgedCall::OnBulkheadDecision(bool acquired) {
  const absl::Time now = environment_.clock->Now();
  CircuitBreaker::Permit permit;
  {
    base::MutexLock lock(&mutex_);
    ++busy_;  // This entry point: an attempt started below may end before Launch returns.
    permit = attempts_[0].permit;
  }
  const absl::Status* stop = StopStatus();
  if (acquired && stop == nullptr) {
    Launch(0, now);
  } else {
    if (acquired) target_.bulkhead().Release();
    target_.breaker().Release(permit);
    if (stop != nullptr) {
      Refuse(0, *stop, CallOutcome::kCancelled, now);
    } else {
      Refuse(0, method_.bulkhead_full_status(), CallOutcome::kRejectedByBulkhead, now);
    }
  }
  ReleaseUnit();
}

void HedgedCall::SendHedge(int index, absl::Time now) {
  CircuitBreaker& breaker = target_.breaker();
  CircuitBreaker::Permit permit;
  if (!breaker.TryAcquire(permit, now)) {
    Refuse(index, breaker.rejection_status(), CallOutcome::kRejectedByBreaker, now);
    return;
  }
  // The breaker just moved to HALF_OPEN: its probes are for first attempts to answer.
  if (permit.probe) {
    breaker.Release(permit);
    Refuse(index, breaker.rejection_status(), CallOutcome::kRejectedByBreaker, now);
    return;
  }
  if (!target_.throttle().Admit(now)) {
    breaker.Release(permit);
    Refuse(index, method_.throttled_status(), CallOutcome::kThrottled, now);
    return;
  }
  // No waiter: a hedge takes a free slot or none.
  if (target_.bulkhead().TryAcquire(nullptr, now) != Bulkhead::Result::kAcquired) {
    breaker.Release(permit);
    Refuse(index, method_.bulkhead_full_status(), CallOutcome::kRejectedByBulkhead, now);
    return;
  }
  // Last, so that a token is spent only on a hedge that is sent.
  if (!target_.budget().TryWithdrawRetry()) {
    target_.bulkhead().Release();
    breaker.Release(permit);
    Refuse(index, method_.bulkhead_full_status(), CallOutcome::kRetryBudgetExhausted, now);
    return;
  }
  {
    base::MutexLock lock(&mutex_);
    attempts_[index].permit = permit;
  }
  Launch(index, now);
}

void HedgedCall::Launch(int index, absl::Time now) {
  MethodMetrics& metrics = method_.metrics();
  metrics.attempts.Increment();
  if (index > 0) metrics.hedges.Increment();
  absl::Time attempt_deadline;
  {
    base::MutexLock lock(&mutex_);
    AttemptState& attempt = attempts_[index];
    attempt.start = now;
    const absl::Time per_attempt_end = now + method_.policy().per_attempt_timeout;
    attempt.deadline_is_callers = deadline_is_callers_ && deadline_ < per_attempt_end;
    attempt.deadline = std::min(deadline_, per_attempt_end);
    attempt.in_flight = true;
    attempt_deadline = attempt.deadline;
    --unsent_;
    ++in_flight_;
    ++launched_;
    if (index == 0) {
      // A half-open probe is the breaker's question about the target; hedging it would spend
      // the probe slots on one caller's latency.
      if (attempt.permit.probe) hedging_stopped_ = true;
      next_hedge_at_ = now + hedging_.delay;
    }
  }
  StartAttempt(index, attempt_deadline);  // May end the attempt before returning.
  // With a hedging delay of zero, the next hedge is due at once.
  const absl::Time after = environment_.clock->Now();
  Actions actions;
  {
    base::MutexLock lock(&mutex_);
    AdvanceLocked(after, actions);
  }
  Run(actions, after);
}

void HedgedCall::Refuse(int index, const absl::Status& status, CallOutcome outcome,
                        absl::Time now) {
  Actions actions;
  {
    base::MutexLock lock(&mutex_);
    --unsent_;
    if (index == 0) {
      DecideLocked(status, outcome, -1, now, actions);
    } else {
      hedging_stopped_ = true;
      if (outcome == CallOutcome::kRetryBudgetExhausted) budget_refused_ = true;
      AdvanceLocked(now, actions);
    }
  }
  Run(actions, now);
  ReleaseUnit();  // The reservation's.
}

bool HedgedCall::CutByCaller(const AttemptState& attempt, absl::StatusCode code,
                             absl::Time now) const {
  return (code == absl::StatusCode::kCancelled && (attempt.cut_by_call || cancel_requested())) ||
         (code == absl::StatusCode::kDeadlineExceeded && attempt.deadline_is_callers &&
          now >= attempt.deadline);
}

bool HedgedCall::CutByCaller(int index, absl::StatusCode code) const {
  const absl::Time now = environment_.clock->Now();
  base::MutexLock lock(&mutex_);
  return CutByCaller(attempts_[index], code, now);
}

void HedgedCall::FinishAttempt(int index, const absl::Status& status, Pushback pushback) {
  const absl::Time now = environment_.clock->Now();
  AttemptState attempt;
  {
    base::MutexLock lock(&mutex_);
    attempts_[index].in_flight = false;
    --in_flight_;
    attempt = attempts_[index];
  }
  target_.bulkhead().Release();
  const absl::Duration elapsed = now - attempt.start;
  const absl::StatusCode code = status.code();
  const bool cut_by_caller = CutByCaller(attempt, code, now);
  if (cut_by_caller) {
    target_.breaker().RecordCallerCut(attempt.permit, elapsed, now);
  } else {
    target_.breaker().Record(attempt.permit, code, elapsed, now);
  }
  // A loser the call cancelled got no answer from the backend: nothing to count.
  if (!(attempt.cut_by_call && code == absl::StatusCode::kCancelled)) {
    target_.throttle().RecordOutcome(code, now);
  }
  method_.metrics().attempt_duration.Observe(elapsed);

  Actions actions;
  {
    base::MutexLock lock(&mutex_);
    if (!decided_) {
      // An attempt cut by its own timeout, with call time left, is a slow answer, not a verdict.
      const bool attempt_timed_out = code == absl::StatusCode::kDeadlineExceeded &&
                                     attempt.deadline < deadline_ && now >= attempt.deadline;
      if (status.ok()) {
        DecideLocked(status, CallOutcome::kSuccess, index, now, actions);
      } else if (StopStatus() == nullptr && !attempt_timed_out &&
                 !hedging_.non_fatal_codes.Contains(code)) {
        DecideLocked(status,
                     code == absl::StatusCode::kDeadlineExceeded ? CallOutcome::kDeadlineExceeded
                                                                 : CallOutcome::kFailure,
                     index, now, actions);
      } else {
        last_failure_ = status;
        last_failed_ = index;
        switch (pushback.kind) {
          case Pushback::Kind::kDoNotRetry:
            hedging_stopped_ = true;
            break;
          case Pushback::Kind::kDelay:
            next_hedge_at_ = now + pushback.delay;
            break;
          case Pushback::Kind::kNone:
            next_hedge_at_ = now;  // The next hedge in line goes at once (gRFC A6).
            break;
        }
        AdvanceLocked(now, actions);
      }
    }
  }
  Run(actions, now);
  ReleaseUnit();  // The attempt's.
}

void HedgedCall::OnWaitOver() {
  const absl::Time now = environment_.clock->Now();
  Actions actions;
  {
    base::MutexLock lock(&mutex_);
    timer_pending_ = false;
    AdvanceLocked(now, actions);
  }
  Run(actions, now);
  ReleaseUnit();  // The timer's.
}

void HedgedCall::AdvanceLocked(absl::Time now, Actions& actions) {
  if (decided_) return;
  const absl::Status* stop = StopStatus();
  const auto may_hedge = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    return stop == nullptr && !hedging_stopped_ && reserved_ < hedging_.max_attempts &&
           next_hedge_at_ < deadline_;
  };
  if (may_hedge() && now >= next_hedge_at_) {
    actions.send = reserved_++;
    ++unsent_;
    ++busy_;
    next_hedge_at_ = now + hedging_.delay;
  }
  if (may_hedge() && !timer_pending_) {
    timer_pending_ = true;
    ++busy_;
    actions.schedule_timer = true;
    actions.timer_at = next_hedge_at_;
  }
  if (in_flight_ > 0 || unsent_ > 0 || may_hedge()) return;
  // Nothing is out and nothing more may go: the call ends with what it has.
  if (stop != nullptr) {
    DecideLocked(*stop, CallOutcome::kCancelled, -1, now, actions);
    return;
  }
  const absl::StatusCode code = last_failure_.code();
  const CallOutcome outcome = budget_refused_ ? CallOutcome::kRetryBudgetExhausted
                              : code == absl::StatusCode::kDeadlineExceeded
                                  ? CallOutcome::kDeadlineExceeded
                                  : CallOutcome::kFailure;
  DecideLocked(last_failure_, outcome, last_failed_, now, actions);
}

void HedgedCall::DecideLocked(const absl::Status& status, CallOutcome outcome, int winner,
                              absl::Time now, Actions& actions) {
  decided_ = true;
  result_ = status;
  winner_ = winner;
  for (int i = 0; i < reserved_; ++i) {
    if (i == winner || !attempts_[i].in_flight) continue;
    attempts_[i].cut_by_call = true;
    actions.cancel_mask |= 1u << i;
  }
  actions.cancel_timer = timer_pending_;
  actions.deliver = true;
  MethodMetrics& metrics = method_.metrics();
  metrics.calls[static_cast<std::size_t>(outcome)].Increment();
  metrics.call_duration.Observe(now - call_start_);
}

void HedgedCall::Run(const Actions& actions, absl::Time now) {
  for (int i = 0; i < kMaxAttempts; ++i) {
    if ((actions.cancel_mask & (1u << i)) != 0) CancelAttempt(i);
  }
  // The caller holds a unit of its own, so giving back the timer's cannot end the call here.
  if (actions.cancel_timer && target_.CancelWait(*this)) {
    base::MutexLock lock(&mutex_);
    timer_pending_ = false;
    --busy_;
  }
  if (actions.schedule_timer && !target_.ScheduleWait(actions.timer_at, *this)) {
    Actions after;
    {
      base::MutexLock lock(&mutex_);  // Shutting down: no hedge from now on.
      timer_pending_ = false;
      --busy_;
      hedging_stopped_ = true;
      AdvanceLocked(now, after);
    }
    Run(after, now);
  }
  if (actions.send >= 0) SendHedge(actions.send, now);
  if (actions.deliver) OnDone(result_, winner_);
}

void HedgedCall::ReleaseUnit() {
  {
    base::MutexLock lock(&mutex_);
    if (--busy_ > 0 || !decided_ || ended_) return;
    ended_ = true;
  }
  Target& target = target_;
  OnEnded();  // May destroy this object.
  target.live_calls_.Add(-1);
}

}  // namespace resilience
