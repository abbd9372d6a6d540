#include "base/testing/fake_environment.h"

#include <utility>

namespace base::testing {

Scheduler::TimerId FakeScheduler::RunAt(absl::Time when, absl::AnyInvocable<void()> callback) {
  MutexLock lock(&mutex_);
  const TimerId id = next_id_++;
  timers_.emplace(std::make_pair(when, id), std::move(callback));
  return id;
}

bool FakeScheduler::Cancel(TimerId id) {
  MutexLock lock(&mutex_);
  for (auto it = timers_.begin(); it != timers_.end(); ++it) {
    if (it->first.second == id) {
      timers_.erase(it);
      return true;
    }
  }
  return false;
}

int FakeScheduler::RunDue() {
  int ran = 0;
  while (true) {
    absl::AnyInvocable<void()> callback;
    {
      MutexLock lock(&mutex_);
      if (timers_.empty() || timers_.begin()->first.first > clock_.Now()) return ran;
      callback = std::move(timers_.begin()->second);
      timers_.erase(timers_.begin());
    }
    callback();
    ++ran;
  }
}

std::size_t FakeScheduler::pending() {
  MutexLock lock(&mutex_);
  return timers_.size();
}

absl::Time FakeScheduler::NextDue() {
  MutexLock lock(&mutex_);
  return timers_.empty() ? absl::InfiniteFuture() : timers_.begin()->first.first;
}

double ScriptedRandom::Uniform01() {
  MutexLock lock(&mutex_);
  if (!values_.empty()) {
    last_ = values_.front();
    values_.pop_front();
  }
  return last_;
}

void ScriptedRandom::Push(double value) {
  MutexLock lock(&mutex_);
  values_.push_back(value);
}

void FakeEnvironment::Advance(absl::Duration duration) {
  const absl::Time target = clock_.Now() + duration;
  scheduler_.RunDue();
  while (true) {
    const absl::Time next = scheduler_.NextDue();
    if (next > target) break;
    if (next > clock_.Now()) clock_.Set(next);
    scheduler_.RunDue();
  }
  clock_.Set(target);
  scheduler_.RunDue();
}

}  // namespace base::testing
