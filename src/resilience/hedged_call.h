// One hedged call through the resilience pipeline, independent of the transport: the call of a
// method whose policy has a hedgingPolicy (gRFC A6; "The Tail at Scale"). GuardedCall makes
// the calls of every other method.
//
// The call sends its first attempt, then, while no attempt has answered, another one each
// hedging delay, up to max_attempts in flight together:
//
// * The first success wins: the call ends with it and the attempts still in flight are
//   cancelled.
// * A fatal failure (a code not among the non-fatal ones, and not an attempt cut by its own
//   per-attempt timeout) ends the call at once with that failure; the others are cancelled.
// * A non-fatal failure sends the next hedge at once instead of after the delay. When no attempt
//   is left in flight and no further one may be sent, the call ends with the last failure.
// * Server pushback: a delay postpones the next hedge to that delay from now; "do not retry"
//   stops hedging (the attempts in flight still may win).
//
// Guards, per attempt, in the order of GuardedCall (deadline, breaker, adaptive throttle,
// bulkhead): the first attempt meets them exactly as a GuardedCall's does (a rejection ends the
// call, the bulkhead may queue it). A hedge is extra load, so it is sent only when every guard
// lets it through at once: the breaker (a hedge is never a half-open probe, and a call whose
// first attempt is a probe is not hedged: the probes are the breaker's question, not the
// caller's), adaptive throttling, a free bulkhead slot without waiting, and a token of the retry
// budget (a hedge spends one, as a retry does). A hedge that any of them turns away is not sent,
// and hedging stops for the call. Every attempt sent is judged by the breaker; an attempt that
// the call itself cancelled (a loser, or after Cancel) is a caller cut (RecordCallerCut), never a
// downstream failure, and adaptive throttling does not count it.
//
// Deadlines are GuardedCall's: the call's deadline bounds every attempt, each attempt also
// by the per-attempt timeout. Cancel and Target::Shutdown stop further hedges and end the call
// with CANCELLED once its attempts have ended, unless one succeeded first.
//
// Completion comes in two steps, because the losers outlive the result: OnDone delivers the
// result as soon as it is known (the winner's success does not wait for the losers'
// cancellation), and OnEnded follows exactly once when every attempt has ended and no timer of
// the call is pending. The object must stay alive until OnEnded, which may destroy it.
//
// Threading: attempts end on any thread, concurrently; state is kept under the call's lock,
// which is never held while calling out (StartAttempt, CancelAttempt, OnDone, OnEnded, the
// guards). Neither StartAttempt nor OnDone may block.
#ifndef HOSPITAL_SRC_RESILIENCE_HEDGED_CALL_H_
#define HOSPITAL_SRC_RESILIENCE_HEDGED_CALL_H_

#include <array>
#include <atomic>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/sync.h"
#include "resilience/backoff.h"
#include "resilience/bulkhead.h"
#include "resilience/circuit_breaker.h"
#include "resilience/metrics.h"
#include "resilience/target.h"

namespace resilience {

class HedgedCall : private Bulkhead::Waiter, private ScheduledWait {
 public:
  static constexpr int kMaxAttempts = HedgingConfig::kMaxAttempts;

  // `method`'s policy must enable hedging.
  explicit HedgedCall(GuardedMethod& method);
  ~HedgedCall() override = default;
  HedgedCall(const HedgedCall&) = delete;
  HedgedCall& operator=(const HedgedCall&) = delete;

  // Starts the call; `parent_deadline` as for GuardedCall::Start.
  void Start(absl::Time parent_deadline = absl::InfiniteFuture());
  // Cancels the call, from any thread, until OnEnded. Never calls OnDone or OnEnded itself.
  void Cancel();

  // The deadline computed by Start.
  absl::Time deadline() const { return deadline_; }
  // Attempts sent so far.
  int attempts() const;

 protected:
  // Sends attempt `index` (0 for the first, then 1, 2, ...), which must end by
  // `attempt_deadline`. The implementation calls FinishAttempt(index, ...) exactly once, on any
  // thread, possibly before returning.
  virtual void StartAttempt(int index, absl::Time attempt_deadline) = 0;
  // Cancels attempt `index` if the transport can; it must still end through FinishAttempt.
  // May run on any thread, also while StartAttempt(index) is running on another.
  virtual void CancelAttempt(int /*index*/) {}
  // The call's result, once: `winner` is the attempt it came from, or -1 when it did not come
  // from an attempt (a guard's rejection, the deadline, cancellation). The status reference
  // is valid only during this call.
  virtual void OnDone(const absl::Status& status, int winner) = 0;
  // Every attempt has ended: the last call into the object, which may destroy it.
  virtual void OnEnded() = 0;

  // Reports the outcome of attempt `index`.
  void FinishAttempt(int index, const absl::Status& status, Pushback pushback = {});
  base::Clock& clock() const { return *environment_.clock; }
  bool cancel_requested() const { return cancelled_.load(std::memory_order_acquire); }
  // Whether attempt `index`, ending now with `code`, was cut short by the call (a loser, or
  // Cancel) or by its caller's deadline rather than the policy's: nothing against the
  // downstream.
  bool CutByCaller(int index, absl::StatusCode code) const;

 private:
  struct AttemptState {
    CircuitBreaker::Permit permit;
    absl::Time start;
    absl::Time deadline;
    bool deadline_is_callers = false;
    bool in_flight = false;
    // Cancelled by the call (a loser, or Cancel): never the downstream's failure.
    bool cut_by_call = false;
  };
  // What to do once the lock is released.
  struct Actions {
    std::uint32_t cancel_mask = 0;  // Attempts to cancel.
    int send = -1;                  // A reserved hedge to send.
    bool cancel_timer = false;
    bool schedule_timer = false;
    absl::Time timer_at;
    bool deliver = false;  // The call was decided: deliver result_.
  };

  bool CutByCaller(const AttemptState& attempt, absl::StatusCode code, absl::Time now) const;
  // The first attempt, through deadline, breaker, throttle and bulkhead (which may queue it).
  void SendFirst(absl::Time now);
  void OnBulkheadDecision(bool acquired) override;
  // A hedge, only if every guard lets it through at once.
  void SendHedge(int index, absl::Time now);
  // A reserved attempt that holds a breaker permit and a bulkhead slot goes out.
  void Launch(int index, absl::Time now);
  // A reserved attempt will not be sent: the first attempt's refusal ends the call with
  // `status`; a hedge's stops hedging.
  void Refuse(int index, const absl::Status& status, CallOutcome outcome, absl::Time now);
  // The hedge timer fired, or the target is shutting down.
  void OnWaitOver() override;
  // Decides what happens next at `now`: a hedge due, the timer to arm, or the end of the call.
  void AdvanceLocked(absl::Time now, Actions& actions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Ends the call with `status`, cancelling every attempt in flight but `winner`.
  void DecideLocked(const absl::Status& status, CallOutcome outcome, int winner, absl::Time now,
                    Actions& actions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void Run(const Actions& actions, absl::Time now);
  // Gives back one unit of pending work (an attempt, a reservation, the timer, a running entry
  // point); the last one after the decision ends the call.
  void ReleaseUnit();
  // Why nothing more may be sent (cancelled, or the target shutting down), or null.
  const absl::Status* StopStatus() const;

  GuardedMethod& method_;
  Target& target_;
  const base::Environment environment_;
  const HedgingConfig& hedging_;
  absl::Time call_start_;
  absl::Time deadline_ = absl::InfiniteFuture();
  bool deadline_is_callers_ = false;
  std::atomic<bool> cancelled_{false};

  mutable base::Mutex mutex_;
  std::array<AttemptState, kMaxAttempts> attempts_ ABSL_GUARDED_BY(mutex_);
  int reserved_ ABSL_GUARDED_BY(mutex_) = 0;  // Attempts given an index (sent or about to be).
  int launched_ ABSL_GUARDED_BY(mutex_) = 0;  // Attempts sent.
  int in_flight_ ABSL_GUARDED_BY(mutex_) = 0;
  int unsent_ ABSL_GUARDED_BY(mutex_) = 0;  // Reserved, neither sent nor refused yet.
  int busy_ ABSL_GUARDED_BY(mutex_) = 0;    // Units of pending work (see ReleaseUnit).
  bool timer_pending_ ABSL_GUARDED_BY(mutex_) = false;
  absl::Time next_hedge_at_ ABSL_GUARDED_BY(mutex_) = absl::InfiniteFuture();
  bool hedging_stopped_ ABSL_GUARDED_BY(mutex_) = false;
  bool budget_refused_ ABSL_GUARDED_BY(mutex_) = false;
  absl::Status last_failure_ ABSL_GUARDED_BY(mutex_);
  int last_failed_ ABSL_GUARDED_BY(mutex_) = -1;
  bool decided_ ABSL_GUARDED_BY(mutex_) = false;
  bool ended_ ABSL_GUARDED_BY(mutex_) = false;
  // Set once, when decided_ becomes true; read by the deliverer after the lock.
  absl::Status result_;
  int winner_ = -1;
};

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_HEDGED_CALL_H_
