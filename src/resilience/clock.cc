#include "resilience/clock.h"

#include <utility>

#include "absl/random/random.h"

namespace resilience {
namespace {

class SystemClockImpl final : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
};

class SystemRandomImpl final : public RandomSource {
 public:
  double Uniform01() override {
    // One generator per thread: no lock on the jitter path.
    thread_local absl::InsecureBitGen generator;
    return absl::Uniform(generator, 0.0, 1.0);
  }
};

}  // namespace

Clock& SystemClock() {
  static SystemClockImpl* const clock = new SystemClockImpl();
  return *clock;
}

RandomSource& SystemRandom() {
  static SystemRandomImpl* const random = new SystemRandomImpl();
  return *random;
}

TimerThread::TimerThread(Clock& clock) : clock_(clock), thread_([this] { Loop(); }) {}

TimerThread::~TimerThread() {
  {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
  }
  thread_.join();
}

Scheduler::TimerId TimerThread::RunAt(absl::Time when, absl::AnyInvocable<void()> callback) {
  absl::MutexLock lock(&mutex_);
  const TimerId id = next_id_++;
  timers_.emplace(Key{when, id}, std::move(callback));
  when_by_id_.emplace(id, when);
  return id;
}

bool TimerThread::Cancel(TimerId id) {
  absl::MutexLock lock(&mutex_);
  auto it = when_by_id_.find(id);
  if (it == when_by_id_.end()) return false;
  timers_.erase(Key{it->second, id});
  when_by_id_.erase(it);
  return true;
}

void TimerThread::Loop() {
  mutex_.Lock();
  while (!stopping_) {
    if (timers_.empty()) {
      // Wakes on RunAt or on stop: both change the watched state.
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
        return stopping_ || !timers_.empty();
      };
      mutex_.Await(absl::Condition(&wake));
      continue;
    }
    auto first = timers_.begin();
    const absl::Time due = first->first.when;
    if (clock_.Now() < due) {
      // Wakes early when a sooner timer is added or on stop.
      auto earlier = [this, due]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
        return stopping_ || (!timers_.empty() && timers_.begin()->first.when < due);
      };
      mutex_.AwaitWithDeadline(absl::Condition(&earlier), due);
      continue;
    }
    absl::AnyInvocable<void()> callback = std::move(first->second);
    when_by_id_.erase(first->first.id);
    timers_.erase(first);
    mutex_.Unlock();
    callback();
    mutex_.Lock();
  }
  mutex_.Unlock();
}

RealEnvironment::RealEnvironment() : timers_(SystemClock()) {}

}  // namespace resilience
