// Deterministic time, timers and randomness for tests of code built on base::Environment.
//
//   base::testing::FakeEnvironment env;
//   ... start a call that will retry after a backoff ...
//   env.Advance(absl::Milliseconds(100));   // runs the timers due by then, on this thread
//
// Nothing sleeps: the clock moves only in Advance, and timers run inside Advance in time order.
#ifndef HOSPITAL_SRC_BASE_TESTING_FAKE_ENVIRONMENT_H_
#define HOSPITAL_SRC_BASE_TESTING_FAKE_ENVIRONMENT_H_

#include <cstddef>
#include <deque>
#include <map>

#include "absl/base/thread_annotations.h"
#include "base/clock.h"
#include "base/sync.h"

namespace base::testing {

// A clock that stands still until advanced. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000)) : now_(start) {}
  absl::Time Now() override {
    MutexLock lock(&mutex_);
    return now_;
  }
  void Set(absl::Time now) {
    MutexLock lock(&mutex_);
    now_ = now;
  }

 private:
  Mutex mutex_;
  absl::Time now_ ABSL_GUARDED_BY(mutex_);
};

// A scheduler whose timers run only when RunDue is called. Thread-safe.
class FakeScheduler final : public Scheduler {
 public:
  explicit FakeScheduler(Clock& clock) : clock_(clock) {}
  TimerId RunAt(absl::Time when, absl::AnyInvocable<void()> callback) override;
  bool Cancel(TimerId id) override;
  // Runs, in time order, every timer due at the clock's current time, including timers that
  // those callbacks schedule for no later than now. Returns how many ran.
  int RunDue();
  // Timers waiting to run.
  std::size_t pending();
  // When the earliest pending timer is due; InfiniteFuture when none is.
  absl::Time NextDue();

 private:
  Clock& clock_;
  Mutex mutex_;
  std::map<std::pair<absl::Time, TimerId>, absl::AnyInvocable<void()>> timers_
      ABSL_GUARDED_BY(mutex_);
  TimerId next_id_ ABSL_GUARDED_BY(mutex_) = 1;
};

// A random source that replays a script of values, then repeats the last one. Thread-safe.
class ScriptedRandom final : public RandomSource {
 public:
  // With no script, every draw is 0.5.
  explicit ScriptedRandom(std::deque<double> values = {}) : values_(std::move(values)) {}
  double Uniform01() override;
  void Push(double value);

 private:
  Mutex mutex_;
  std::deque<double> values_ ABSL_GUARDED_BY(mutex_);
  double last_ ABSL_GUARDED_BY(mutex_) = 0.5;
};

// Fake clock, scheduler and random source wired together.
class FakeEnvironment final {
 public:
  FakeEnvironment() : scheduler_(clock_) {}
  Environment environment() { return {&clock_, &scheduler_, &random_}; }
  FakeClock& clock() { return clock_; }
  FakeScheduler& scheduler() { return scheduler_; }
  ScriptedRandom& random() { return random_; }
  absl::Time Now() { return clock_.Now(); }
  // Moves time forward by `duration`, stopping at each timer's due time to run it.
  void Advance(absl::Duration duration);

 private:
  FakeClock clock_;
  FakeScheduler scheduler_;
  ScriptedRandom random_;
};

}  // namespace base::testing

#endif  // HOSPITAL_SRC_BASE_TESTING_FAKE_ENVIRONMENT_H_
