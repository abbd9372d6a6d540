#include "resilience/cancellation.h"

#include <utility>

namespace resilience {

void Cancellation::Cancel() {
  mutex_.Lock();
  if (cancelled_.exchange(true, std::memory_order_acq_rel)) {
    mutex_.Unlock();
    return;
  }
  // One at a time, outside the lock (a callback may register, unregister or end its call), each
  // taken out of the map first so that Unregister knows it is running.
  while (!callbacks_.empty()) {
    auto node = callbacks_.extract(callbacks_.begin());
    running_ = node.key();
    running_thread_ = std::this_thread::get_id();
    mutex_.Unlock();
    node.mapped()();
    mutex_.Lock();
    running_ = 0;
    callback_done_.SignalAll();
  }
  mutex_.Unlock();
}

Cancellation::Id Cancellation::Register(absl::AnyInvocable<void()> callback) {
  {
    base::MutexLock lock(&mutex_);
    if (!cancelled_.load(std::memory_order_relaxed)) {
      const Id id = next_id_++;
      callbacks_.emplace(id, std::move(callback));
      return id;
    }
  }
  callback();
  return 0;
}

void Cancellation::Unregister(Id id) {
  if (id == 0) return;
  base::MutexLock lock(&mutex_);
  if (callbacks_.erase(id) != 0) return;
  while (running_ == id && running_thread_ != std::this_thread::get_id()) {
    callback_done_.Wait(&mutex_);
  }
}

}  // namespace resilience
