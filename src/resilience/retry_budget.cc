#include "resilience/retry_budget.h"

#include <algorithm>
#include <cmath>

namespace resilience {
namespace {

constexpr double kMicro = 1e6;

std::int64_t ToMicro(double tokens) { return std::llround(tokens * kMicro); }

}  // namespace

RetryBudget::RetryBudget(const RetryBudgetConfig& config, base::Clock& clock)
    : config_(config),
      ratio_micro_(ToMicro(config.ratio)),
      max_micro_(ToMicro(config.max_tokens)),
      clock_(clock),
      micro_tokens_(max_micro_),
      last_refill_(clock.Now()) {}

std::int64_t RetryBudget::Deposit(std::int64_t micro) {
  std::int64_t current = micro_tokens_.load(std::memory_order_relaxed);
  std::int64_t next = 0;
  do {
    next = std::min(max_micro_, current + micro);
  } while (!micro_tokens_.compare_exchange_weak(current, next, std::memory_order_relaxed));
  return next;
}

void RetryBudget::Refill(absl::Time now) {
  std::int64_t credit = 0;
  {
    base::MutexLock lock(&refill_mutex_);
    if (now <= last_refill_) return;
    credit = ToMicro(absl::ToDoubleSeconds(now - last_refill_) * config_.min_retries_per_second);
    last_refill_ = now;
  }
  if (credit > 0) Deposit(credit);
}

double RetryBudget::RecordCall() {
  if (!config_.enabled) return -1.0;
  // A full bucket (the healthy case) is only read, so that calls on many threads do not fight
  // over the cache line.
  const std::int64_t current = micro_tokens_.load(std::memory_order_relaxed);
  if (current >= max_micro_) return static_cast<double>(current) / kMicro;
  return static_cast<double>(Deposit(ratio_micro_)) / kMicro;
}

bool RetryBudget::TryWithdrawRetry() {
  if (!config_.enabled) return true;
  Refill(clock_.Now());
  constexpr auto kOneToken = static_cast<std::int64_t>(kMicro);
  std::int64_t current = micro_tokens_.load(std::memory_order_relaxed);
  do {
    if (current < kOneToken) return false;
  } while (!micro_tokens_.compare_exchange_weak(current, current - kOneToken,
                                                std::memory_order_relaxed));
  return true;
}

double RetryBudget::tokens() {
  if (!config_.enabled) return -1.0;
  Refill(clock_.Now());
  return static_cast<double>(micro_tokens_.load(std::memory_order_relaxed)) / kMicro;
}

}  // namespace resilience
