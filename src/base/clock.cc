#include "base/clock.h"

#include <utility>

#include <random>

namespace base {
namespace {

class SystemClockImpl final : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
};

class MonotonicClockImpl final : public Clock {
 public:
  MonotonicClockImpl()
      : wall_anchor_(absl::Now()), steady_anchor_(std::chrono::steady_clock::now()) {}
  absl::Time Now() override {
    return wall_anchor_ + absl::FromChrono(std::chrono::steady_clock::now() - steady_anchor_);
  }

 private:
  const absl::Time wall_anchor_;
  const std::chrono::steady_clock::time_point steady_anchor_;
};

class SystemRandomImpl final : public RandomSource {
 public:
  double Uniform01() override {
    // One generator per thread, so the jitter path takes no lock. (absl::BitGen would seed from
    // a pool shared through Abseil's own locks, which ThreadSanitizer cannot see; see sync.h.)
    thread_local std::mt19937_64 generator{std::random_device{}()};
    return std::uniform_real_distribution<double>(0.0, 1.0)(generator);
  }
};

}  // namespace

Clock& SystemClock() {
  static SystemClockImpl* const clock = new SystemClockImpl();
  return *clock;
}

Clock& MonotonicClock() {
  static MonotonicClockImpl* const clock = new MonotonicClockImpl();
  return *clock;
}

absl::Time ToClockTime(std::chrono::system_clock::time_point wall_deadline, Clock& clock) {
  if (wall_deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return clock.Now() + absl::FromChrono(wall_deadline - std::chrono::system_clock::now());
}

RandomSource& SystemRandom() {
  static SystemRandomImpl* const random = new SystemRandomImpl();
  return *random;
}

TimerThread::TimerThread(Clock& clock) : clock_(clock), thread_([this] { Loop(); }) {}

TimerThread::~TimerThread() {
  {
    MutexLock lock(&mutex_);
    stopping_ = true;
    wake_.Signal();
  }
  thread_.join();
}

Scheduler::TimerId TimerThread::RunAt(absl::Time when, absl::AnyInvocable<void()> callback) {
  MutexLock lock(&mutex_);
  const TimerId id = next_id_++;
  // Wake the thread only when the new timer is due before everything it is waiting for.
  const bool earliest = timers_.empty() || when < timers_.begin()->first.when;
  timers_.emplace(Key{when, id}, std::move(callback));
  when_by_id_.emplace(id, when);
  if (earliest) wake_.Signal();
  return id;
}

bool TimerThread::Cancel(TimerId id) {
  MutexLock lock(&mutex_);
  auto it = when_by_id_.find(id);
  if (it == when_by_id_.end()) {
    // A callback cancelling itself must not wait for itself.
    if (std::this_thread::get_id() != thread_.get_id()) {
      while (running_ == id) callback_done_.Wait(&mutex_);
    }
    return false;
  }
  timers_.erase(Key{it->second, id});
  when_by_id_.erase(it);
  return true;
}

void TimerThread::Loop() {
  mutex_.Lock();
  while (!stopping_) {
    if (timers_.empty()) {
      wake_.Wait(&mutex_);
      continue;
    }
    auto first = timers_.begin();
    const absl::Time due = first->first.when;
    if (const absl::Time now = clock_.Now(); now < due) {
      wake_.WaitFor(&mutex_, due - now);
      continue;
    }
    absl::AnyInvocable<void()> callback = std::move(first->second);
    running_ = first->first.id;
    when_by_id_.erase(first->first.id);
    timers_.erase(first);
    mutex_.Unlock();
    callback();
    // Destroyed outside the lock too: it may own objects whose destructors take other locks.
    callback = nullptr;
    mutex_.Lock();
    running_ = 0;
    callback_done_.SignalAll();
  }
  mutex_.Unlock();
}

RealEnvironment::RealEnvironment() : timers_(MonotonicClock()) {}

}  // namespace base
