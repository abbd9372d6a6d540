// A retry budget: a token bucket that lets retries through only while they stay a small fraction
// of calls, in the spirit of gRPC's retryThrottling and the budgets of Finagle and Envoy.
//
// Every call deposits `ratio` tokens; every retry must withdraw one whole token; the bucket also
// refills by `min_retries_per_second` whatever the traffic, and never holds more than
// `max_tokens`. So over any interval of length T with C calls, retries <= ratio * C +
// max_tokens + min_retries_per_second * T: when a downstream fails broadly, attempts sent stay
// at or below (1 + ratio) x calls plus that small floor, instead of max_attempts x calls.
//
// Thread-safe.
#ifndef HOSPITAL_SRC_RESILIENCE_RETRY_BUDGET_H_
#define HOSPITAL_SRC_RESILIENCE_RETRY_BUDGET_H_

#include <atomic>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "base/clock.h"
#include "base/sync.h"

namespace resilience {

struct RetryBudgetConfig {
  bool enabled = false;  // When false every retry is allowed and tokens() reports -1.
  double ratio = 0.1;
  double min_retries_per_second = 1.0;
  double max_tokens = 10.0;
};

class RetryBudget final {
 public:
  RetryBudget(const RetryBudgetConfig& config, base::Clock& clock);

  // Records a call (its first attempt): deposits `ratio` tokens. Returns the tokens held after
  // the deposit (-1 when disabled), for a gauge.
  double RecordCall();
  // Asks to retry. Withdraws one token and returns true, or returns false if less than one
  // token is left (the budget is exhausted).
  bool TryWithdrawRetry();
  // Tokens in the bucket now, or -1 when the budget is disabled.
  double tokens();

  bool enabled() const { return config_.enabled; }

 private:
  // Adds `micro` millionths of a token, capped at max_tokens, without a lock. Returns the new
  // balance.
  std::int64_t Deposit(std::int64_t micro);
  // Credits min_retries_per_second for the time since the last refill.
  void Refill(absl::Time now);

  const RetryBudgetConfig config_;
  const std::int64_t ratio_micro_;
  const std::int64_t max_micro_;
  base::Clock& clock_;
  // The balance in millionths of a token: an integer, so that the deposit on every call is one
  // compare-and-swap instead of a lock.
  std::atomic<std::int64_t> micro_tokens_;
  // Serialises time-based refills, so that elapsed time is credited once.
  base::Mutex refill_mutex_;
  absl::Time last_refill_ ABSL_GUARDED_BY(refill_mutex_);
};

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_RETRY_BUDGET_H_
