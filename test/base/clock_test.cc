#include "base/clock.h"

#include <chrono>

#include <catch2/catch.hpp>

#include "base/testing/fake_environment.h"

namespace base {
namespace {

TEST_CASE("a wall-clock deadline lands on another clock through the time remaining", "[clock]") {
  // A clock nowhere near the wall clock, as a monotonic one may be after an NTP step.
  testing::FakeEnvironment env;
  const absl::Time fake_now = env.Now();
  const auto wall_deadline = std::chrono::system_clock::now() + std::chrono::seconds(5);
  const absl::Time converted = ToClockTime(wall_deadline, env.clock());
  CHECK(converted <= fake_now + absl::Seconds(5));
  CHECK(converted > fake_now + absl::Seconds(4));
  CHECK(ToClockTime(std::chrono::system_clock::time_point::max(), env.clock()) ==
        absl::InfiniteFuture());
  // A deadline already passed is in the clock's past.
  CHECK(ToClockTime(std::chrono::system_clock::now() - std::chrono::seconds(1), env.clock()) <
        fake_now);
}

TEST_CASE("the monotonic clock never goes back and starts at wall time", "[clock]") {
  Clock& clock = MonotonicClock();
  const absl::Time first = clock.Now();
  CHECK(absl::AbsDuration(first - absl::Now()) < absl::Seconds(5));
  absl::Time previous = first;
  for (int i = 0; i < 100000; ++i) {
    const absl::Time now = clock.Now();
    REQUIRE(now >= previous);
    previous = now;
  }
}

TEST_CASE("the real environment times with the monotonic clock", "[clock]") {
  RealEnvironment env;
  CHECK(env.environment().clock == &MonotonicClock());
}

TEST_CASE("the timer thread fires on its clock's time, by duration", "[clock][timer]") {
  RealEnvironment env;
  Scheduler& scheduler = *env.environment().scheduler;
  Notification fired;
  const absl::Time start = MonotonicClock().Now();
  scheduler.RunAt(start + absl::Milliseconds(20), [&] { fired.Notify(); });
  REQUIRE(fired.WaitForNotificationWithTimeout(absl::Seconds(5)));
  CHECK(MonotonicClock().Now() - start >= absl::Milliseconds(20));
}

}  // namespace
}  // namespace base
