// A caller's cancellation, handed down to the calls made on its behalf.
//
//   resilience::Cancellation cancellation;  // one per request being served
//   options.cancellation = &cancellation;   // resilience::CallOptions (grpc_call.h)
//   ...
//   cancellation.Cancel();  // its client went away: e.g. from a callback reactor's OnCancel
//
// Cancel runs every registered callback once, on the cancelling thread; a callback registered
// after Cancel runs at once, on the registering thread. After Unregister returns the callback
// is neither running nor going to run, unless Unregister was called from inside that very
// callback (then it returns at once, as waiting would never end). Thread-safe; the object must
// outlive every registration.
#ifndef HOSPITAL_SRC_RESILIENCE_CANCELLATION_H_
#define HOSPITAL_SRC_RESILIENCE_CANCELLATION_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "base/sync.h"

namespace resilience {

class Cancellation final {
 public:
  using Id = std::uint64_t;

  Cancellation() = default;
  Cancellation(const Cancellation&) = delete;
  Cancellation& operator=(const Cancellation&) = delete;

  // Cancels: runs the registered callbacks, in registration order. Later calls do nothing.
  void Cancel();
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

  // Registers `callback` for Cancel and returns its id; if already cancelled, runs it now and
  // returns 0.
  Id Register(absl::AnyInvocable<void()> callback);
  // Drops a registration (0 and unknown ids are ignored), waiting for its callback if it is
  // running on another thread.
  void Unregister(Id id);

 private:
  std::atomic<bool> cancelled_{false};
  base::Mutex mutex_;
  std::map<Id, absl::AnyInvocable<void()>> callbacks_ ABSL_GUARDED_BY(mutex_);
  Id next_id_ ABSL_GUARDED_BY(mutex_) = 1;
  // The callback Cancel is running (0: none) and the thread running it.
  Id running_ ABSL_GUARDED_BY(mutex_) = 0;
  std::thread::id running_thread_ ABSL_GUARDED_BY(mutex_);
  base::CondVar callback_done_;
};

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_CANCELLATION_H_
