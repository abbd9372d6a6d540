// A bulkhead: at most max_concurrent calls in flight to one target, so that one slow downstream
// cannot take every thread, connection or request slot of the caller.
//
// A call that finds the bulkhead full is rejected at once or, when max_wait is positive, queued
// until a slot frees or its wait (bounded by max_wait and by the call's own deadline) runs out.
// A queued call holds no thread: the decision is delivered to its Waiter, on the thread that
// released the slot or on the scheduler's thread when the wait times out. Waiters are served in
// arrival order.
//
// Thread-safe. TryAcquire without waiting does not allocate; queuing does. A limited bulkhead's
// count of calls in flight is one atomic that every call shares (it must be, to enforce the
// limit); without a limit, calls are counted per thread and never share a cache line.
#ifndef HOSPITAL_SRC_RESILIENCE_BULKHEAD_H_
#define HOSPITAL_SRC_RESILIENCE_BULKHEAD_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <list>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "base/sharded_counter.h"
#include "base/sync.h"

namespace resilience {

struct BulkheadConfig {
  std::uint32_t max_concurrent = 0;  // 0: no limit.
  absl::Duration max_wait = absl::ZeroDuration();
};

class Bulkhead final {
 public:
  // Receives the outcome of a queued acquisition exactly once.
  class Waiter {
   public:
    virtual ~Waiter() = default;
    // `acquired` true: the caller now holds a slot and must Release it. False: timed out.
    virtual void OnBulkheadDecision(bool acquired) = 0;
  };

  enum class Result { kAcquired, kRejected, kQueued };

  Bulkhead(const BulkheadConfig& config, base::Environment environment);
  // Tells the waiters still queued that they got no slot (Shutdown). Destroy only when no call
  // is using the bulkhead.
  ~Bulkhead();
  Bulkhead(const Bulkhead&) = delete;
  Bulkhead& operator=(const Bulkhead&) = delete;

  // Takes a slot if one is free. Otherwise, if waiting is configured and `deadline` leaves time,
  // queues `waiter` (which must stay alive until told) and returns kQueued; else kRejected.
  Result TryAcquire(Waiter* waiter, absl::Time deadline);
  // Frees a slot, handing it to the oldest waiter if there is one.
  void Release();
  // Ends every wait: each queued waiter is told it got no slot (on this thread) and its timer is
  // cancelled. Later waits are still possible; the caller stops them from starting.
  void Shutdown();

  std::uint32_t in_flight() const {
    return limited()
               ? in_flight_.load(std::memory_order_relaxed)
               : static_cast<std::uint32_t>(std::max<std::int64_t>(0, unlimited_in_flight_.Sum()));
  }
  std::uint32_t max_concurrent() const { return config_.max_concurrent; }
  bool limited() const { return config_.max_concurrent > 0; }

 private:
  struct Queued {
    std::uint64_t id;
    Waiter* waiter;
    base::Scheduler::TimerId timer;
  };
  void OnWaitTimeout(std::uint64_t id);

  const BulkheadConfig config_;
  const base::Environment environment_;
  // The one piece of state that every call of a limited bulkhead must share.
  std::atomic<std::uint32_t> in_flight_{0};
  // Without a limit nothing is enforced, so threads count apart (a gauge adds them up).
  base::ShardedCounter unlimited_in_flight_;

  base::Mutex mutex_;
  std::list<Queued> queue_ ABSL_GUARDED_BY(mutex_);
  std::uint64_t next_waiter_id_ ABSL_GUARDED_BY(mutex_) = 1;
};

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_BULKHEAD_H_
