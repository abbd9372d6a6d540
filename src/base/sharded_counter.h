// A counter that many threads update without sharing a cache line: each thread adds into one of
// kShards padded slots (chosen once per thread), and Sum adds the slots up.
//
//   base::ShardedCounter live_calls;
//   live_calls.Add(1);   // on one thread
//   live_calls.Add(-1);  // on another: the sum is exact, a slot may go negative
//   if (live_calls.Sum() == 0) ...
//
// Add is one uncontended atomic add as long as fewer threads than kShards share it. Sum reads
// every slot; it is exact once the adds it must see have happened-before it (the adds release
// and Sum acquires), and otherwise a value that was true at some moment of the read only if
// nothing moved meanwhile, which is what a metric scrape needs. Thread-safe.
#ifndef HOSPITAL_SRC_BASE_SHARDED_COUNTER_H_
#define HOSPITAL_SRC_BASE_SHARDED_COUNTER_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace base {

class ShardedCounter final {
 public:
  static constexpr std::size_t kShards = 16;

  void Add(std::int64_t delta) {
    shards_[ShardOfThisThread()].value.fetch_add(delta, std::memory_order_acq_rel);
  }
  std::int64_t Sum() const {
    std::int64_t sum = 0;
    for (const Shard& shard : shards_) sum += shard.value.load(std::memory_order_acquire);
    return sum;
  }

  // The shard of the calling thread, in [0, kShards): threads take them in turn, so that the
  // first kShards threads never share one. For other per-thread sharded state.
  static std::size_t ShardOfThisThread() {
    static std::atomic<std::size_t> next_shard{0};
    thread_local const std::size_t shard =
        next_shard.fetch_add(1, std::memory_order_relaxed) % kShards;
    return shard;
  }

 private:
  // 64 bytes: a cache line on the machines we run on, so that two slots never share one.
  struct alignas(64) Shard {
    std::atomic<std::int64_t> value{0};
  };

  std::array<Shard, kShards> shards_{};
};

}  // namespace base

#endif  // HOSPITAL_SRC_BASE_SHARDED_COUNTER_H_
