#include "resilience/bulkhead.h"

#include <algorithm>
#include <optional>

namespace resilience {

Bulkhead::Bulkhead(const BulkheadConfig& config, base::Environment environment)
    : config_(config), environment_(environment) {}

Bulkhead::~Bulkhead() { Shutdown(); }

void Bulkhead::Shutdown() {
  std::list<Queued> queued;
  {
    base::MutexLock lock(&mutex_);
    queued.swap(queue_);
  }
  for (const Queued& waiter : queued) {
    // A timer already running finds its id gone from the queue and does nothing.
    environment_.scheduler->Cancel(waiter.timer);
    waiter.waiter->OnBulkheadDecision(false);
  }
}

Bulkhead::Result Bulkhead::TryAcquire(Waiter* waiter, absl::Time deadline) {
  if (!limited()) {
    unlimited_in_flight_.Add(1);  // Nothing to enforce: counted for the gauge only.
    return Result::kAcquired;
  }
  std::uint32_t current = in_flight_.load(std::memory_order_relaxed);
  while (current < config_.max_concurrent) {
    if (in_flight_.compare_exchange_weak(current, current + 1, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
      return Result::kAcquired;
    }
  }
  if (config_.max_wait <= absl::ZeroDuration() || waiter == nullptr) return Result::kRejected;
  const absl::Time wait_until = std::min(environment_.clock->Now() + config_.max_wait, deadline);
  base::MutexLock lock(&mutex_);
  // A slot may have been released between the failed exchange and taking the lock; Release
  // hands slots to waiters under this lock, so checking again here closes the gap.
  current = in_flight_.load(std::memory_order_relaxed);
  while (current < config_.max_concurrent) {
    if (in_flight_.compare_exchange_weak(current, current + 1, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
      return Result::kAcquired;
    }
  }
  if (wait_until <= environment_.clock->Now()) return Result::kRejected;
  const std::uint64_t id = next_waiter_id_++;
  // The timer names the waiter by id, never by pointer: if the slot is handed over while the
  // timer is starting, the waiter may be gone by the time the timer looks. The timer cannot run
  // before it is recorded below: it needs mutex_, which is held here.
  const base::Scheduler::TimerId timer =
      environment_.scheduler->RunAt(wait_until, [this, id] { OnWaitTimeout(id); });
  queue_.push_back(Queued{id, waiter, timer});
  return Result::kQueued;
}

void Bulkhead::Release() {
  if (!limited()) {
    unlimited_in_flight_.Add(-1);
    return;
  }
  if (config_.max_wait <= absl::ZeroDuration()) {
    // Nobody can be queued: no lock needed.
    in_flight_.fetch_sub(1, std::memory_order_release);
    return;
  }
  std::optional<Queued> next;
  {
    base::MutexLock lock(&mutex_);
    if (!queue_.empty()) {
      // The slot passes straight to the waiter: in_flight_ stays as it is.
      next = queue_.front();
      queue_.pop_front();
    } else {
      in_flight_.fetch_sub(1, std::memory_order_release);
    }
  }
  if (!next) return;
  // Outside the lock, which the timer's callback takes. Once Cancel returns the timer is gone,
  // so nothing refers to this bulkhead on the waiter's behalf after the call ends.
  environment_.scheduler->Cancel(next->timer);
  next->waiter->OnBulkheadDecision(true);
}

void Bulkhead::OnWaitTimeout(std::uint64_t id) {
  Waiter* timed_out = nullptr;
  {
    base::MutexLock lock(&mutex_);
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (it->id == id) {
        timed_out = it->waiter;
        queue_.erase(it);
        break;
      }
    }
  }
  if (timed_out != nullptr) timed_out->OnBulkheadDecision(false);
}

}  // namespace resilience
