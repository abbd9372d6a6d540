// Time, timers and randomness behind interfaces, so that every component that waits, times or
// jitters can be driven by a fake clock in tests.
//
//   base::RealEnvironment env;          // wall clock, one timer thread, thread-safe RNG
//   resilience::Target target("morgue", policy, env.environment(), metrics);
//
// Tests use base::testing::FakeEnvironment (base/testing/fake_environment.h) instead, whose clock
// moves only when told to and which runs due timers on the thread that advances it.
#ifndef HOSPITAL_SRC_BASE_CLOCK_H_
#define HOSPITAL_SRC_BASE_CLOCK_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "base/sync.h"

namespace base {

// Source of the current time. Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
};

// Runs callbacks at a point in time, without a thread per waiting callback. Implementations are
// thread-safe; callbacks run on a thread owned by the scheduler and must not block.
class Scheduler {
 public:
  using TimerId = std::uint64_t;
  virtual ~Scheduler() = default;
  // Runs `callback` once, at or soon after `when` (at once if `when` has passed). Returns an id
  // for Cancel.
  virtual TimerId RunAt(absl::Time when, absl::AnyInvocable<void()> callback) = 0;
  // Drops a callback that has not started and returns true. Returns false if it already ran or
  // is unknown. If it is running on another thread, waits for it to finish first, so that after
  // Cancel returns the callback is neither running nor going to run. Must not be called while
  // holding a lock that the callback takes.
  virtual bool Cancel(TimerId id) = 0;
};

// Uniform random numbers. Implementations are thread-safe.
class RandomSource {
 public:
  virtual ~RandomSource() = default;
  // A number drawn uniformly from [0, 1).
  virtual double Uniform01() = 0;
};

// The three collaborators, passed together. Not owned; they must outlive every user.
struct Environment {
  Clock* clock;
  Scheduler* scheduler;
  RandomSource* random;
};

// The wall clock (absl::Now()): for times a person reads or a database stores. An NTP step
// moves it, so never time durations, deadlines or waits with it.
Clock& SystemClock();

// A monotonic clock for durations, deadlines and timers: it never steps. Its readings are
// absl::Times that matched the wall clock when the process first read it, and then advance
// with std::chrono::steady_clock; compare them only with each other (convert a wall-clock
// deadline with ToClockTime).
Clock& MonotonicClock();

// `wall_deadline` (a system_clock time point, as gRPC gives deadlines) on `clock`'s scale:
// now on `clock` plus the time remaining until it. time_point::max() is InfiniteFuture.
absl::Time ToClockTime(std::chrono::system_clock::time_point wall_deadline, Clock& clock);

// A thread-safe source seeded from the operating system.
RandomSource& SystemRandom();

// A Scheduler with one thread that sleeps until the earliest timer is due, by `clock` (a wait
// is a duration on that clock, so a monotonic clock makes it immune to wall-clock steps). The
// destructor stops the thread; callbacks not yet run are dropped, so users that must complete
// their work (resilience::TargetRegistry) cancel and finish their timers before it goes.
class TimerThread final : public Scheduler {
 public:
  explicit TimerThread(Clock& clock);
  ~TimerThread() override;
  TimerThread(const TimerThread&) = delete;
  TimerThread& operator=(const TimerThread&) = delete;

  TimerId RunAt(absl::Time when, absl::AnyInvocable<void()> callback) override;
  bool Cancel(TimerId id) override;

 private:
  struct Key {
    absl::Time when;
    TimerId id;
    bool operator<(const Key& other) const {
      return when != other.when ? when < other.when : id < other.id;
    }
  };
  void Loop();

  Clock& clock_;
  Mutex mutex_;
  std::map<Key, absl::AnyInvocable<void()>> timers_ ABSL_GUARDED_BY(mutex_);
  std::map<TimerId, absl::Time> when_by_id_ ABSL_GUARDED_BY(mutex_);
  TimerId next_id_ ABSL_GUARDED_BY(mutex_) = 1;
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  // The timer whose callback is running, 0 when none is.
  TimerId running_ ABSL_GUARDED_BY(mutex_) = 0;
  // Signalled when a callback finishes.
  CondVar callback_done_;
  // Signalled on stop and when a timer due sooner than all others is added.
  CondVar wake_;
  std::thread thread_;
};

// The production environment: monotonic clock, system random source and a TimerThread it owns.
class RealEnvironment final {
 public:
  RealEnvironment();
  Environment environment() { return {&MonotonicClock(), &timers_, &SystemRandom()}; }

 private:
  TimerThread timers_;
};

}  // namespace base

#endif  // HOSPITAL_SRC_BASE_CLOCK_H_
