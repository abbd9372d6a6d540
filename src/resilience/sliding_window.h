// The sliding windows a circuit breaker judges: the last N calls, or the calls of the last N
// seconds. ShardedWindow is the breaker's, spread over shards that threads record into without
// sharing a lock; TimeWindow is one shard's seconds, not thread-safe. No allocation after
// construction.
#ifndef HOSPITAL_SRC_RESILIENCE_SLIDING_WINDOW_H_
#define HOSPITAL_SRC_RESILIENCE_SLIDING_WINDOW_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "base/sharded_counter.h"
#include "base/sync.h"

namespace resilience {

// Totals over a window.
struct WindowCounts {
  std::uint32_t calls = 0;
  std::uint32_t failures = 0;
  std::uint32_t slow_calls = 0;

  double failure_rate_percent() const { return calls == 0 ? 0.0 : 100.0 * failures / calls; }
  double slow_call_rate_percent() const { return calls == 0 ? 0.0 : 100.0 * slow_calls / calls; }
};

// The calls of the last `seconds` whole seconds, one bucket per second.
class TimeWindow final {
 public:
  explicit TimeWindow(std::uint32_t seconds);
  // Adds one call's outcome, observed at `now`.
  void Record(absl::Time now, bool failure, bool slow);
  // The totals as of `now`, without the seconds that have slid out.
  WindowCounts Counts(absl::Time now);
  void Clear();

 private:
  struct Bucket {
    std::int64_t second = 0;
    WindowCounts counts;
  };
  // Empties the buckets of seconds that have left the window ending at `second`.
  void SlideTo(std::int64_t second);

  std::vector<Bucket> buckets_;
  std::int64_t newest_second_ = 0;
  WindowCounts totals_;
};

// A window that threads record into without sharing a lock: each thread records into its own
// shard (as base::ShardedCounter's), so threads on different shards never wait for each other
// or share a cache line, and Counts merges the shards.
//
// Merged, the window means what it says. A time window is the calls of the last N seconds,
// whichever thread recorded them (each shard is a TimeWindow; their totals add up). A count
// window is the last N calls overall: each shard keeps its own last N calls with their times,
// and Counts takes the N most recent across the shards (so with one thread it is exactly the
// last N, and with several it is the last N by the clock; calls recorded in the same instant
// are ordered arbitrarily). Merging reads every shard and costs O(shards x N): the breaker does
// it only when a failure or slow call is recorded.
//
// Each shard holds the calls of one generation (the breaker's: it changes on every transition),
// so that starting a new window is one change of number, with no lock of every shard: a shard
// still holding an older generation is emptied by the next call it records, and left out of
// Counts meanwhile; an outcome of an older generation than a shard's is dropped.
//
// Thread-safe. Record does not allocate; neither does Counts (its buffer is made up front).
class ShardedWindow final {
 public:
  static constexpr std::size_t kShards = base::ShardedCounter::kShards;
  enum class Kind { kCount, kTime };

  // `size`: calls (kCount) or seconds (kTime).
  ShardedWindow(Kind kind, std::uint32_t size);

  // Records into this thread's shard, for `generation`.
  void Record(std::uint64_t generation, absl::Time now, bool failure, bool slow);
  // The merged totals of `generation` as of `now`.
  WindowCounts Counts(std::uint64_t generation, absl::Time now);

 private:
  struct Entry {
    std::int64_t nanos = 0;
    bool failure = false;
    bool slow = false;
  };
  struct alignas(64) Shard {
    base::Mutex mutex;
    std::uint64_t generation ABSL_GUARDED_BY(mutex) = 0;
    // kCount: the shard's last calls, a ring of `size` entries.
    std::vector<Entry> ring ABSL_GUARDED_BY(mutex);
    std::size_t next ABSL_GUARDED_BY(mutex) = 0;
    std::size_t filled ABSL_GUARDED_BY(mutex) = 0;
    // kTime: per-second buckets.
    std::unique_ptr<TimeWindow> seconds ABSL_GUARDED_BY(mutex);
  };

  const Kind kind_;
  const std::uint32_t size_;
  std::array<Shard, kShards> shards_;
  base::Mutex merge_mutex_;
  std::vector<Entry> merge_ ABSL_GUARDED_BY(merge_mutex_);  // kShards x size, reserved.
};

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_SLIDING_WINDOW_H_
