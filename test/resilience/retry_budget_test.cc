#include "resilience/retry_budget.h"

#include <catch2/catch.hpp>

#include "base/testing/fake_environment.h"

namespace resilience {
namespace {

RetryBudgetConfig Budget(double ratio, double min_retries_per_second, double max_tokens) {
  RetryBudgetConfig config;
  config.enabled = true;
  config.ratio = ratio;
  config.min_retries_per_second = min_retries_per_second;
  config.max_tokens = max_tokens;
  return config;
}

TEST_CASE("a disabled budget allows every retry", "[budget]") {
  base::testing::FakeClock clock;
  RetryBudget budget(RetryBudgetConfig{}, clock);
  for (int i = 0; i < 1000; ++i) REQUIRE(budget.TryWithdrawRetry());
  CHECK(budget.tokens() == -1);
}

TEST_CASE("the budget starts full and runs dry", "[budget]") {
  base::testing::FakeClock clock;
  RetryBudget budget(Budget(0.1, 0, 3), clock);
  CHECK(budget.TryWithdrawRetry());
  CHECK(budget.TryWithdrawRetry());
  CHECK(budget.TryWithdrawRetry());
  CHECK_FALSE(budget.TryWithdrawRetry());
  CHECK(budget.tokens() == Approx(0));
}

TEST_CASE("calls deposit ratio tokens, capped at max_tokens", "[budget]") {
  base::testing::FakeClock clock;
  RetryBudget budget(Budget(0.25, 0, 2), clock);
  CHECK(budget.TryWithdrawRetry());
  CHECK(budget.TryWithdrawRetry());
  CHECK_FALSE(budget.TryWithdrawRetry());
  for (int i = 0; i < 3; ++i) budget.RecordCall();
  CHECK_FALSE(budget.TryWithdrawRetry());  // 0.75 tokens.
  budget.RecordCall();
  CHECK(budget.TryWithdrawRetry());  // 1.0 token.
  for (int i = 0; i < 100; ++i) budget.RecordCall();
  CHECK(budget.tokens() == Approx(2));
}

TEST_CASE("the budget refills with time at min_retries_per_second", "[budget]") {
  base::testing::FakeClock clock;
  RetryBudget budget(Budget(0, 2, 5), clock);
  while (budget.TryWithdrawRetry()) {
  }
  clock.Set(clock.Now() + absl::Milliseconds(400));
  CHECK_FALSE(budget.TryWithdrawRetry());  // 0.8 tokens.
  clock.Set(clock.Now() + absl::Milliseconds(100));
  CHECK(budget.TryWithdrawRetry());  // 1.0 token.
  clock.Set(clock.Now() + absl::Hours(1));
  CHECK(budget.tokens() == Approx(5));
}

TEST_CASE("under total failure, retries stay within ratio x calls plus the floor", "[budget]") {
  base::testing::FakeClock clock;
  const RetryBudgetConfig config = Budget(0.1, 1, 10);
  RetryBudget budget(config, clock);
  // 10 seconds at 1000 calls a second, each wanting 2 retries.
  int calls = 0;
  int retries = 0;
  for (int ms = 0; ms < 10'000; ++ms) {
    clock.Set(clock.Now() + absl::Milliseconds(1));
    budget.RecordCall();
    ++calls;
    for (int r = 0; r < 2; ++r) retries += budget.TryWithdrawRetry() ? 1 : 0;
  }
  const double bound =
      config.ratio * calls + config.max_tokens + 10 * config.min_retries_per_second;
  CHECK(retries <= bound);
  CHECK(retries >= config.ratio * calls);  // The budget is spent, not hoarded.
}

}  // namespace
}  // namespace resilience
