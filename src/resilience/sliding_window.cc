#include "resilience/sliding_window.h"

#include <algorithm>

namespace resilience {
namespace {

void Subtract(WindowCounts& totals, const WindowCounts& part) {
  totals.calls -= part.calls;
  totals.failures -= part.failures;
  totals.slow_calls -= part.slow_calls;
}

}  // namespace

TimeWindow::TimeWindow(std::uint32_t seconds) : buckets_(std::max<std::uint32_t>(seconds, 1)) {}

void TimeWindow::SlideTo(std::int64_t second) {
  if (second <= newest_second_) return;
  const auto size = static_cast<std::int64_t>(buckets_.size());
  // Only the buckets of the seconds between the newest seen and now can hold stale counts; after
  // a gap longer than the window every bucket is stale.
  const std::int64_t first_stale = std::max(newest_second_ + 1, second - size + 1);
  for (std::int64_t s = first_stale; s <= second; ++s) {
    Bucket& bucket = buckets_[static_cast<std::size_t>(((s % size) + size) % size)];
    Subtract(totals_, bucket.counts);
    bucket = Bucket{s, {}};
  }
  newest_second_ = second;
}

void TimeWindow::Record(absl::Time now, bool failure, bool slow) {
  const std::int64_t second = absl::ToUnixSeconds(now);
  SlideTo(second);
  if (second <= newest_second_ - static_cast<std::int64_t>(buckets_.size())) {
    return;  // Older than the window (the clock went backwards a long way): ignore.
  }
  const auto size = static_cast<std::int64_t>(buckets_.size());
  Bucket& bucket = buckets_[static_cast<std::size_t>(((second % size) + size) % size)];
  if (bucket.second != second) return;  // A second already slid out; ignore.
  ++bucket.counts.calls;
  ++totals_.calls;
  if (failure) {
    ++bucket.counts.failures;
    ++totals_.failures;
  }
  if (slow) {
    ++bucket.counts.slow_calls;
    ++totals_.slow_calls;
  }
}

WindowCounts TimeWindow::Counts(absl::Time now) {
  SlideTo(absl::ToUnixSeconds(now));
  return totals_;
}

void TimeWindow::Clear() {
  std::fill(buckets_.begin(), buckets_.end(), Bucket{});
  newest_second_ = 0;
  totals_ = {};
}

ShardedWindow::ShardedWindow(Kind kind, std::uint32_t size)
    : kind_(kind), size_(std::max<std::uint32_t>(size, 1)) {
  for (Shard& shard : shards_) {
    base::MutexLock lock(&shard.mutex);
    if (kind_ == Kind::kCount) {
      shard.ring.resize(size_);
    } else {
      shard.seconds = std::make_unique<TimeWindow>(size_);
    }
  }
  if (kind_ == Kind::kCount) {
    base::MutexLock lock(&merge_mutex_);
    merge_.reserve(kShards * size_);
  }
}

void ShardedWindow::Record(std::uint64_t generation, absl::Time now, bool failure, bool slow) {
  Shard& shard = shards_[base::ShardedCounter::ShardOfThisThread()];
  base::MutexLock lock(&shard.mutex);
  if (shard.generation > generation) return;  // A late outcome of an earlier window.
  if (shard.generation < generation) {
    shard.generation = generation;
    shard.next = 0;
    shard.filled = 0;
    if (shard.seconds) shard.seconds->Clear();
  }
  if (kind_ == Kind::kTime) {
    shard.seconds->Record(now, failure, slow);
    return;
  }
  shard.ring[shard.next] = Entry{absl::ToUnixNanos(now), failure, slow};
  shard.next = (shard.next + 1) % shard.ring.size();
  shard.filled = std::min(shard.filled + 1, shard.ring.size());
}

WindowCounts ShardedWindow::Counts(std::uint64_t generation, absl::Time now) {
  WindowCounts merged;
  if (kind_ == Kind::kTime) {
    for (Shard& shard : shards_) {
      base::MutexLock lock(&shard.mutex);
      if (shard.generation != generation) continue;
      const WindowCounts counts = shard.seconds->Counts(now);
      merged.calls += counts.calls;
      merged.failures += counts.failures;
      merged.slow_calls += counts.slow_calls;
    }
    return merged;
  }
  base::MutexLock merge_lock(&merge_mutex_);
  merge_.clear();
  for (Shard& shard : shards_) {
    base::MutexLock lock(&shard.mutex);
    if (shard.generation != generation) continue;
    merge_.insert(merge_.end(), shard.ring.begin(),
                  shard.ring.begin() + static_cast<std::ptrdiff_t>(shard.filled));
  }
  auto newest_end = merge_.end();
  if (merge_.size() > size_) {
    // The size_ most recent calls, across shards.
    newest_end = merge_.begin() + size_;
    std::nth_element(merge_.begin(), newest_end, merge_.end(),
                     [](const Entry& a, const Entry& b) { return a.nanos > b.nanos; });
  }
  for (auto it = merge_.begin(); it != newest_end; ++it) {
    ++merged.calls;
    if (it->failure) ++merged.failures;
    if (it->slow) ++merged.slow_calls;
  }
  return merged;
}

}  // namespace resilience
