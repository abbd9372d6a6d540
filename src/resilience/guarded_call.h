// One call through the resilience pipeline, independent of the transport.
//
// The order of the guards, outermost first, and why:
//
//   deadline -> retry (+ budget) -> circuit breaker -> adaptive throttle -> bulkhead -> attempt
//
// * The deadline is outermost: it bounds the whole call, retries and backoff included, and a
//   call whose time is already spent fails with DEADLINE_EXCEEDED before touching anything.
// * Retry wraps the breaker, so every attempt is judged by the breaker on its own and a breaker
//   that opens mid-call stops the retries at once (a rejection by the breaker is final).
// * Adaptive throttling sits between the breaker and the bulkhead. After the breaker, because an
//   open breaker already rejects everything and its half-open probes must reach the downstream
//   to find out whether it recovered; throttling is the graded answer while the breaker is
//   closed. Before the bulkhead, so that a request rejected locally never takes a slot. Its
//   rejection is final like the breaker's (retrying a local rejection at once would only be
//   rejected again) and is never judged by the breaker (nothing was sent).
// * The breaker wraps the bulkhead, so a call the breaker rejects never takes a concurrency
//   slot, and a full bulkhead (an overload of this client, not a fault of the downstream) is
//   never counted as a downstream failure: the breaker's permission is handed back unused.
// * The per-attempt timeout is innermost, so an attempt that runs out of time is a failure (and,
//   if it took long enough, a slow call) in the breaker's window.
//
// Retry rules: an attempt is retried only if attempts remain, the method is idempotent (a
// non-idempotent method is never retried once an attempt was sent), it was not a half-open
// probe of the breaker, the caller has not cancelled the call, its status code is
// retryable (RESOURCE_EXHAUSTED only together with valid server pushback) or the attempt ran
// out of its per-attempt timeout, the server did not push back with "do not retry", the delay
// (pushback, else full-jitter backoff) ends before the deadline and the breaker would not
// reject the retry by then (OPEN, or HALF_OPEN with every probe slot taken), and the retry
// budget has a token. After a retry at the server's pushback delay the backoff starts again
// from initialBackoff (gRFC A6). Waiting for a retry holds no thread: the next attempt is
// scheduled on the Scheduler.
//
// Whose fault a timeout is: a DEADLINE_EXCEEDED attempt whose deadline was the policy's (the
// method's timeout or per-attempt timeout) counts against the downstream like any failure. One
// whose deadline was its caller's (the parent deadline minus the margin, earlier than both of
// the policy's) does not: the caller ran out of time, which says nothing about the downstream,
// so the breaker records it only as a slow call if it had lasted that long (RecordCallerCut).
//
// Cancellation: Cancel (or a resilience::Cancellation passed to the gRPC adapter) stops the
// call: an attempt in flight is cancelled, no further attempt is sent (a call waiting for a
// retry or for a bulkhead slot ends when that wait would have, without sending), and the call
// ends with CANCELLED and the outcome "cancelled", unless an attempt had already succeeded. The
// cancelled attempt is never counted as the downstream's failure. Target::Shutdown ends calls
// the same way, at once for those waiting.

//
// Usage: subclass, implement StartAttempt and OnDone, then call Start. resilience::UnaryCall
// (grpc_call.h) does this for gRPC unary methods.
//
// Threading: the call is a chain of steps with one step active at a time; StartAttempt and
// OnDone run on the thread that started the call, the thread that finished the previous
// attempt, or the scheduler's thread. Neither may block. The object must stay alive until
// OnDone, which may destroy it.
#ifndef HOSPITAL_SRC_RESILIENCE_GUARDED_CALL_H_
#define HOSPITAL_SRC_RESILIENCE_GUARDED_CALL_H_

#include <atomic>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "resilience/backoff.h"
#include "resilience/bulkhead.h"
#include "resilience/circuit_breaker.h"
#include "resilience/target.h"

namespace resilience {

class GuardedCall : private Bulkhead::Waiter, private ScheduledWait {
 public:
  explicit GuardedCall(GuardedMethod& method);
  ~GuardedCall() override = default;
  GuardedCall(const GuardedCall&) = delete;
  GuardedCall& operator=(const GuardedCall&) = delete;

  // Starts the call. `parent_deadline` is the deadline of the request being served, if any: the
  // call's deadline is then min(now + timeout, parent_deadline - deadline_margin).
  void Start(absl::Time parent_deadline = absl::InfiniteFuture());

  // Cancels the call, from any thread, at any time until OnDone has been called (see the
  // file comment). Never calls OnDone itself; it may run on another thread meanwhile.
  void Cancel();

  // The deadline computed by Start.
  absl::Time deadline() const { return deadline_; }
  // Attempts sent so far.
  int attempts() const { return attempts_; }

 protected:
  // Sends one attempt that must end by `attempt_deadline`. The implementation calls
  // FinishAttempt exactly once, on any thread, possibly before returning.
  virtual void StartAttempt(absl::Time attempt_deadline) = 0;
  // The call's result, once. The status reference is valid only during this call. The object
  // may be destroyed inside OnDone.
  virtual void OnDone(const absl::Status& status) = 0;

  // The clock the call is timed with.
  base::Clock& clock() const { return *environment_.clock; }
  // When the attempt being started was sent, by clock(); valid inside StartAttempt.
  absl::Time attempt_start() const { return attempt_start_; }
  // Reports the outcome of the attempt started last.
  void FinishAttempt(const absl::Status& status, Pushback pushback = {});
  // Cancels the attempt in flight, if the transport can; called by Cancel on the cancelling
  // thread, possibly while StartAttempt runs on another. The attempt must still end through
  // FinishAttempt.
  virtual void CancelAttempt() {}
  // Whether Cancel was called: an implementation that creates the attempt's transport state
  // after Cancel's CancelAttempt may have run checks this afterwards.
  bool cancel_requested() const { return cancelled_.load(std::memory_order_acquire); }

  // Whether the attempt that just ended with `code` at `now` was cut short by the caller: its
  // cancellation, or its own deadline rather than the policy's.
  bool CutByCaller(absl::StatusCode code, absl::Time now) const;

 private:
  // Tries to send the next attempt at `now`: deadline, breaker, bulkhead.
  void Attempt(absl::Time now);
  // The retry's backoff is over, or the target is shutting down.
  void OnWaitOver() override;
  // Why the call must stop now without sending (cancelled, or the target shutting down), or
  // null if it may go on.
  const absl::Status* StopStatus() const;
  // Sends the attempt once breaker and bulkhead let it through.
  void Send(absl::Time now);
  // Decides whether a failed attempt is retried, and schedules it if so. Returns false if the
  // call must end with the attempt's status; sets `outcome` to the outcome to report then.
  bool ScheduleRetry(const absl::Status& status, Pushback pushback, absl::Time now,
                     CallOutcome& outcome);
  void Finish(const absl::Status& status, CallOutcome outcome, absl::Time now);
  void OnBulkheadDecision(bool acquired) override;

  GuardedMethod& method_;
  Target& target_;
  const base::Environment environment_;
  absl::Time call_start_;
  absl::Time deadline_ = absl::InfiniteFuture();
  // Whether deadline_ is the caller's (parent deadline minus margin) rather than the policy's.
  bool deadline_is_callers_ = false;
  absl::Time attempt_start_;
  absl::Time attempt_deadline_;
  bool attempt_deadline_is_callers_ = false;
  int attempts_ = 0;
  // The exponent of the next backoff; back to the start after a retry at pushback's delay.
  int backoff_step_ = 0;
  CircuitBreaker::Permit permit_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_GUARDED_CALL_H_
