#include "resilience/bulkhead.h"

#include <vector>

#include <catch2/catch.hpp>

#include "base/testing/fake_environment.h"

namespace resilience {
namespace {

class RecordingWaiter final : public Bulkhead::Waiter {
 public:
  void OnBulkheadDecision(bool acquired) override { decisions.push_back(acquired); }
  std::vector<bool> decisions;
};

BulkheadConfig Limit(std::uint32_t max_concurrent, absl::Duration max_wait) {
  BulkheadConfig config;
  config.max_concurrent = max_concurrent;
  config.max_wait = max_wait;
  return config;
}

TEST_CASE("an unlimited bulkhead admits everything", "[bulkhead]") {
  base::testing::FakeEnvironment env;
  Bulkhead bulkhead({}, env.environment());
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(bulkhead.TryAcquire(nullptr, absl::InfiniteFuture()) == Bulkhead::Result::kAcquired);
  }
  CHECK(bulkhead.in_flight() == 1000);
}

TEST_CASE("a full bulkhead rejects at once when waiting is off", "[bulkhead]") {
  base::testing::FakeEnvironment env;
  Bulkhead bulkhead(Limit(2, absl::ZeroDuration()), env.environment());
  RecordingWaiter waiter;
  CHECK(bulkhead.TryAcquire(&waiter, absl::InfiniteFuture()) == Bulkhead::Result::kAcquired);
  CHECK(bulkhead.TryAcquire(&waiter, absl::InfiniteFuture()) == Bulkhead::Result::kAcquired);
  CHECK(bulkhead.TryAcquire(&waiter, absl::InfiniteFuture()) == Bulkhead::Result::kRejected);
  bulkhead.Release();
  CHECK(bulkhead.TryAcquire(&waiter, absl::InfiniteFuture()) == Bulkhead::Result::kAcquired);
  CHECK(bulkhead.in_flight() == 2);
  CHECK(waiter.decisions.empty());
}

TEST_CASE("queued callers get freed slots in arrival order", "[bulkhead]") {
  base::testing::FakeEnvironment env;
  Bulkhead bulkhead(Limit(1, absl::Seconds(1)), env.environment());
  RecordingWaiter first;
  RecordingWaiter second;
  REQUIRE(bulkhead.TryAcquire(nullptr, absl::InfiniteFuture()) == Bulkhead::Result::kAcquired);
  REQUIRE(bulkhead.TryAcquire(&first, absl::InfiniteFuture()) == Bulkhead::Result::kQueued);
  REQUIRE(bulkhead.TryAcquire(&second, absl::InfiniteFuture()) == Bulkhead::Result::kQueued);
  bulkhead.Release();
  CHECK(first.decisions == std::vector<bool>{true});
  CHECK(second.decisions.empty());
  CHECK(bulkhead.in_flight() == 1);  // Handed over, not freed.
  bulkhead.Release();
  CHECK(second.decisions == std::vector<bool>{true});
  env.Advance(absl::Seconds(2));  // Their timers fire, find nobody, and do nothing.
  CHECK(first.decisions.size() == 1);
  CHECK(second.decisions.size() == 1);
}

TEST_CASE("a queued caller is rejected when its wait runs out", "[bulkhead]") {
  base::testing::FakeEnvironment env;
  Bulkhead bulkhead(Limit(1, absl::Milliseconds(300)), env.environment());
  RecordingWaiter waiter;
  REQUIRE(bulkhead.TryAcquire(nullptr, absl::InfiniteFuture()) == Bulkhead::Result::kAcquired);
  REQUIRE(bulkhead.TryAcquire(&waiter, absl::InfiniteFuture()) == Bulkhead::Result::kQueued);
  env.Advance(absl::Milliseconds(299));
  CHECK(waiter.decisions.empty());
  env.Advance(absl::Milliseconds(1));
  CHECK(waiter.decisions == std::vector<bool>{false});
  bulkhead.Release();  // Nobody is waiting any more: the slot is freed.
  CHECK(bulkhead.in_flight() == 0);
}

TEST_CASE("the wait is bounded by the call's deadline", "[bulkhead]") {
  base::testing::FakeEnvironment env;
  Bulkhead bulkhead(Limit(1, absl::Seconds(10)), env.environment());
  RecordingWaiter waiter;
  REQUIRE(bulkhead.TryAcquire(nullptr, absl::InfiniteFuture()) == Bulkhead::Result::kAcquired);
  REQUIRE(bulkhead.TryAcquire(&waiter, env.Now() + absl::Milliseconds(50)) ==
          Bulkhead::Result::kQueued);
  env.Advance(absl::Milliseconds(50));
  CHECK(waiter.decisions == std::vector<bool>{false});
  // A deadline already spent is not queued at all.
  CHECK(bulkhead.TryAcquire(&waiter, env.Now()) == Bulkhead::Result::kRejected);
}

TEST_CASE("destroying a bulkhead tells its waiters, and cancels their timers", "[bulkhead]") {
  base::testing::FakeEnvironment env;
  RecordingWaiter waiter;
  {
    Bulkhead bulkhead(Limit(1, absl::Seconds(1)), env.environment());
    REQUIRE(bulkhead.TryAcquire(nullptr, absl::InfiniteFuture()) == Bulkhead::Result::kAcquired);
    REQUIRE(bulkhead.TryAcquire(&waiter, absl::InfiniteFuture()) == Bulkhead::Result::kQueued);
    REQUIRE(env.scheduler().pending() == 1);
  }
  CHECK(waiter.decisions == std::vector<bool>{false});
  CHECK(env.scheduler().pending() == 0);
}

}  // namespace
}  // namespace resilience
