#include "resilience/cancellation.h"

#include <atomic>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "absl/time/clock.h"

namespace resilience {
namespace {

TEST_CASE("cancel runs each registered callback once, in order", "[cancel]") {
  Cancellation cancellation;
  std::vector<int> ran;
  cancellation.Register([&] { ran.push_back(1); });
  const Cancellation::Id second = cancellation.Register([&] { ran.push_back(2); });
  cancellation.Register([&] { ran.push_back(3); });
  cancellation.Unregister(second);
  CHECK_FALSE(cancellation.cancelled());
  cancellation.Cancel();
  cancellation.Cancel();
  CHECK(cancellation.cancelled());
  CHECK(ran == std::vector<int>{1, 3});
}

TEST_CASE("a callback registered after the cancel runs at once", "[cancel]") {
  Cancellation cancellation;
  cancellation.Cancel();
  bool ran = false;
  CHECK(cancellation.Register([&] { ran = true; }) == 0);
  CHECK(ran);
  cancellation.Unregister(0);  // Harmless.
}

TEST_CASE("a callback may unregister itself and register others", "[cancel]") {
  Cancellation cancellation;
  Cancellation::Id self = 0;
  bool later_ran = false;
  self = cancellation.Register([&] {
    cancellation.Unregister(self);  // Returns at once: waiting would never end.
    cancellation.Register([&] { later_ran = true; });
  });
  cancellation.Cancel();
  CHECK(later_ran);
}

TEST_CASE("unregister waits for the callback running on another thread", "[cancel]") {
  Cancellation cancellation;
  std::atomic<bool> started{false};
  std::atomic<bool> finished{false};
  const Cancellation::Id id = cancellation.Register([&] {
    started = true;
    absl::SleepFor(absl::Milliseconds(50));
    finished = true;
  });
  std::thread canceller([&] { cancellation.Cancel(); });
  while (!started) std::this_thread::yield();
  cancellation.Unregister(id);
  CHECK(finished);  // Unregister returned only after the callback did.
  canceller.join();
}

TEST_CASE("registering, unregistering and cancelling race safely", "[cancel]") {
  for (int round = 0; round < 50; ++round) {
    Cancellation cancellation;
    std::atomic<int> ran{0};
    std::vector<std::thread> registrants;
    for (int t = 0; t < 4; ++t) {
      registrants.emplace_back([&] {
        for (int i = 0; i < 20; ++i) {
          const Cancellation::Id id = cancellation.Register([&] { ++ran; });
          if (i % 2 == 0) cancellation.Unregister(id);
        }
      });
    }
    std::thread canceller([&] { cancellation.Cancel(); });
    for (std::thread& registrant : registrants) registrant.join();
    canceller.join();
    CHECK(ran.load() <= 80);
    CHECK(ran.load() >= 40);  // Every kept registration ran, before or after the cancel.
  }
}

}  // namespace
}  // namespace resilience
