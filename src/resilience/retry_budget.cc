#include "resilience/retry_budget.h"

#include <algorithm>

namespace resilience {

RetryBudget::RetryBudget(const RetryBudgetConfig& config, Clock& clock)
    : config_(config), clock_(clock), tokens_(config.max_tokens), last_refill_(clock.Now()) {}

void RetryBudget::RefillLocked(absl::Time now) {
  if (now > last_refill_) {
    const double seconds = absl::ToDoubleSeconds(now - last_refill_);
    tokens_ = std::min(config_.max_tokens, tokens_ + seconds * config_.min_retries_per_second);
    last_refill_ = now;
  }
}

double RetryBudget::RecordCall() {
  if (!config_.enabled) return -1.0;
  absl::MutexLock lock(&mutex_);
  tokens_ = std::min(config_.max_tokens, tokens_ + config_.ratio);
  return tokens_;
}

bool RetryBudget::TryWithdrawRetry() {
  if (!config_.enabled) return true;
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mutex_);
  RefillLocked(now);
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

double RetryBudget::tokens() {
  if (!config_.enabled) return -1.0;
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mutex_);
  RefillLocked(now);
  return tokens_;
}

}  // namespace resilience
