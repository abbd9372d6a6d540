// The sliding windows a circuit breaker judges: the last N calls, or the calls of the last N
// seconds. CountWindow and TimeWindow are not thread-safe; ShardedWindow spreads one over
// shards that threads record into without sharing a lock. No allocation after construction.
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

class SlidingWindow {
 public:
  virtual ~SlidingWindow() = default;
  // Adds one call's outcome, observed at `now`.
  virtual void Record(absl::Time now, bool failure, bool slow) = 0;
  // The totals as of `now` (a time window drops the seconds that have slid out).
  virtual WindowCounts Counts(absl::Time now) = 0;
  virtual void Clear() = 0;
};

// The last `size` calls, in a ring buffer.
class CountWindow final : public SlidingWindow {
 public:
  explicit CountWindow(std::uint32_t size);
  void Record(absl::Time now, bool failure, bool slow) override;
  WindowCounts Counts(absl::Time now) override;
  void Clear() override;

 private:
  static constexpr std::uint8_t kFailure = 1;
  static constexpr std::uint8_t kSlow = 2;
  std::vector<std::uint8_t> outcomes_;
  std::size_t next_ = 0;
  WindowCounts totals_;
};

// The calls of the last `seconds` whole seconds, one bucket per second.
class TimeWindow final : public SlidingWindow {
 public:
  explicit TimeWindow(std::uint32_t seconds);
  void Record(absl::Time now, bool failure, bool slow) override;
  WindowCounts Counts(absl::Time now) override;
  void Clear() override;

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

// One window per shard, each with its own lock; a thread records into the shard it was given
// (as base::ShardedCounter's), so threads on different shards never wait for each other or
// share a cache line, and Counts merges the shards.
//
// Each shard holds the calls of one generation (the breaker's: it changes on every transition),
// so that starting a new window is one change of number, with no lock of every shard: a shard
// still holding an older generation is emptied by the next call it records, and left out of
// Counts meanwhile; an outcome of an older generation than a shard's is dropped.
//
// Merged, a time window is exact: the calls of the last N seconds, whichever thread recorded
// them. A count window holds each shard's last N calls: with one thread (or all recording into
// one shard) that is the last N calls, and with T threads on T shards it is the last N of each,
// so its rates are over between N and T x N recent calls and its call count may exceed N.
//
// Thread-safe.
class ShardedWindow final {
 public:
  static constexpr std::size_t kShards = base::ShardedCounter::kShards;

  // `make` builds one shard's window.
  template <typename MakeWindow>
  explicit ShardedWindow(MakeWindow make) {
    for (Shard& shard : shards_) shard.window = make();
  }

  // Records into this thread's shard, for `generation`.
  void Record(std::uint64_t generation, absl::Time now, bool failure, bool slow);
  // The merged totals of `generation` as of `now`.
  WindowCounts Counts(std::uint64_t generation, absl::Time now);

 private:
  struct alignas(64) Shard {
    base::Mutex mutex;
    std::unique_ptr<SlidingWindow> window ABSL_GUARDED_BY(mutex);
    std::uint64_t generation ABSL_GUARDED_BY(mutex) = 0;
  };
  std::array<Shard, kShards> shards_;
};

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_SLIDING_WINDOW_H_
