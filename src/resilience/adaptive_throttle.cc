#include "resilience/adaptive_throttle.h"

#include <algorithm>

namespace resilience {

AdaptiveThrottle::AdaptiveThrottle(const AdaptiveThrottleConfig& config, base::RandomSource& random)
    : config_(config), random_(random) {
  if (!config_.enabled) return;
  for (Shard& shard : shards_) {
    base::MutexLock lock(&shard.mutex);
    shard.buckets.resize(std::max<std::uint32_t>(config_.window_seconds, 1));
  }
}

void AdaptiveThrottle::Count(absl::Time now, std::uint64_t requests, std::uint64_t accepts) {
  const std::int64_t second = absl::ToUnixSeconds(now);
  Shard& shard = shards_[base::ShardedCounter::ShardOfThisThread()];
  base::MutexLock lock(&shard.mutex);
  const auto size = static_cast<std::int64_t>(shard.buckets.size());
  Bucket& bucket = shard.buckets[static_cast<std::size_t>(((second % size) + size) % size)];
  if (bucket.second != second) bucket = Bucket{second, 0, 0};  // A second that slid out.
  bucket.requests += requests;
  bucket.accepts += accepts;
}

double AdaptiveThrottle::Refresh(absl::Time now) {
  const std::int64_t now_nanos = absl::ToUnixNanos(now);
  std::int64_t refreshed = refreshed_at_nanos_.load(std::memory_order_acquire);
  if (now_nanos - refreshed < absl::ToInt64Nanoseconds(kRefresh) ||
      !refreshed_at_nanos_.compare_exchange_strong(refreshed, now_nanos,
                                                   std::memory_order_acq_rel)) {
    return probability_.load(std::memory_order_relaxed);  // Fresh, or another call refreshes.
  }
  const std::int64_t second = absl::ToUnixSeconds(now);
  const std::int64_t oldest = second - static_cast<std::int64_t>(config_.window_seconds) + 1;
  double requests = 0;
  double accepts = 0;
  for (Shard& shard : shards_) {
    base::MutexLock lock(&shard.mutex);
    for (const Bucket& bucket : shard.buckets) {
      if (bucket.second < oldest || bucket.second > second) continue;
      requests += static_cast<double>(bucket.requests);
      accepts += static_cast<double>(bucket.accepts);
    }
  }
  const double probability = std::max(0.0, (requests - config_.k * accepts) / (requests + 1));
  probability_.store(probability, std::memory_order_relaxed);
  return probability;
}

bool AdaptiveThrottle::Admit(absl::Time now) {
  if (!config_.enabled) return true;
  const double probability = Refresh(now);
  if (probability <= 0.0 || random_.Uniform01() >= probability) return true;
  Count(now, 1, 0);  // Rejected here: a request with no answer to wait for.
  return false;
}

void AdaptiveThrottle::RecordOutcome(absl::StatusCode code, absl::Time now) {
  if (!config_.enabled) return;
  Count(now, 1, config_.rejection_codes.Contains(code) ? 0 : 1);
}

double AdaptiveThrottle::RejectionProbability(absl::Time now) {
  if (!config_.enabled) return 0.0;
  return Refresh(now);
}

}  // namespace resilience
