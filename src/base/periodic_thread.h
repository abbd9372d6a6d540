// Runs a task now and then every `interval` on a thread of its own, until stopped: for
// background passes that may block (a readiness check reading the disk, a pass that calls other
// services and waits). Callbacks that never block belong on a Scheduler (clock.h) instead, whose
// one thread they would otherwise hold up.
//
//   base::PeriodicThread reconciler(absl::Seconds(1), [this] { ReconcileOnce(); });
//   ...
//   reconciler.Stop();  // or let the destructor stop it
//
// The interval is measured in real time from the end of one run to the start of the next; a run
// is never interrupted. Thread-safe.
#ifndef HOSPITAL_SRC_BASE_PERIODIC_THREAD_H_
#define HOSPITAL_SRC_BASE_PERIODIC_THREAD_H_

#include <functional>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/sync.h"

namespace base {

class PeriodicThread final {
 public:
  // Starts the thread; the first run begins at once.
  PeriodicThread(absl::Duration interval, std::function<void()> task)
      : interval_(interval), task_(std::move(task)), thread_([this] { Loop(); }) {}
  ~PeriodicThread() { Stop(); }
  PeriodicThread(const PeriodicThread&) = delete;
  PeriodicThread& operator=(const PeriodicThread&) = delete;

  // Waits for a run in progress to finish; no run starts after Stop returns. Idempotent.
  void Stop() {
    {
      MutexLock lock(&mutex_);
      stopping_ = true;
      wake_.SignalAll();
    }
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  }

 private:
  void Loop() {
    while (true) {
      {
        MutexLock lock(&mutex_);
        if (stopping_) return;
      }
      task_();
      MutexLock lock(&mutex_);
      const absl::Time next = absl::Now() + interval_;
      while (!stopping_ && absl::Now() < next) wake_.WaitWithDeadline(&mutex_, next);
      if (stopping_) return;
    }
  }

  const absl::Duration interval_;
  const std::function<void()> task_;
  Mutex mutex_;
  CondVar wake_;
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  // Last: started once everything it uses is constructed.
  std::thread thread_;
};

}  // namespace base

#endif  // HOSPITAL_SRC_BASE_PERIODIC_THREAD_H_
