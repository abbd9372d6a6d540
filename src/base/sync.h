// Mutex, condition variable and notification with Abseil's thread-safety annotations, built on
// the standard library.
//
// Why not absl::Mutex: Debian's Abseil is a shared library built without ThreadSanitizer, so
// the synchronisation inside absl::Mutex is invisible to TSan, which then reports every access
// guarded by it as a race. std::mutex goes through pthreads, which TSan intercepts, so this
// library stays checkable under -fsanitize=thread. The annotations (ABSL_GUARDED_BY and
// friends) work on these types exactly as on absl::Mutex, and clang's -Wthread-safety checks
// them. The same approach as LevelDB's port::Mutex.
#ifndef HOSPITAL_SRC_BASE_SYNC_H_
#define HOSPITAL_SRC_BASE_SYNC_H_

#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace base {

class ABSL_LOCKABLE Mutex final {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mutex_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mutex_.unlock(); }
  // Tells the analysis the lock is held where it cannot see it.
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

 private:
  friend class CondVar;
  std::mutex mutex_;
};

// Holds a Mutex for its scope.
class ABSL_SCOPED_LOCKABLE MutexLock final {
 public:
  explicit MutexLock(Mutex* mutex) ABSL_EXCLUSIVE_LOCK_FUNCTION(mutex) : mutex_(mutex) {
    mutex_->Lock();
  }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mutex_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mutex_;
};

class CondVar final {
 public:
  // Releases `mutex` while waiting for a signal (or a spurious wake-up); holds it again on return.
  void Wait(Mutex* mutex) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex) {
    std::unique_lock<std::mutex> lock(mutex->mutex_, std::adopt_lock);
    condition_.wait(lock);
    lock.release();
  }
  // As Wait, but gives up at `deadline` (real time). Returns true if the deadline passed.
  bool WaitWithDeadline(Mutex* mutex, absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex) {
    std::unique_lock<std::mutex> lock(mutex->mutex_, std::adopt_lock);
    const bool timed_out =
        condition_.wait_until(lock, absl::ToChronoTime(deadline)) == std::cv_status::timeout;
    lock.release();
    return timed_out;
  }
  // As Wait, but gives up after `timeout`, measured on the steady clock (immune to wall-clock
  // steps). Returns true if the timeout passed.
  bool WaitFor(Mutex* mutex, absl::Duration timeout) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex) {
    std::unique_lock<std::mutex> lock(mutex->mutex_, std::adopt_lock);
    const bool timed_out =
        condition_.wait_for(lock, absl::ToChronoNanoseconds(timeout)) == std::cv_status::timeout;
    lock.release();
    return timed_out;
  }
  void Signal() { condition_.notify_one(); }
  void SignalAll() { condition_.notify_all(); }

 private:
  std::condition_variable condition_;
};

// A one-shot event: any number of threads wait until one thread notifies. May be destroyed as
// soon as WaitForNotification returns.
class Notification final {
 public:
  void Notify() {
    MutexLock lock(&mutex_);
    notified_ = true;
    condition_.SignalAll();
  }
  void WaitForNotification() {
    MutexLock lock(&mutex_);
    while (!notified_) condition_.Wait(&mutex_);
  }
  // Returns true if notified before `timeout` passed.
  bool WaitForNotificationWithTimeout(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    MutexLock lock(&mutex_);
    while (!notified_) {
      if (condition_.WaitWithDeadline(&mutex_, deadline)) return notified_;
    }
    return true;
  }

 private:
  Mutex mutex_;
  CondVar condition_;
  bool notified_ ABSL_GUARDED_BY(mutex_) = false;
};

}  // namespace base

#endif  // HOSPITAL_SRC_BASE_SYNC_H_
