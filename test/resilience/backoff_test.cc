#include "resilience/backoff.h"

#include <catch2/catch.hpp>

#include "base/testing/fake_environment.h"

namespace resilience {
namespace {

TEST_CASE("backoff ceiling grows by the multiplier and stops at max_backoff", "[backoff]") {
  const BackoffConfig config{absl::Milliseconds(100), absl::Milliseconds(700), 2.0};
  CHECK(BackoffCeiling(config, 1) == absl::Milliseconds(100));
  CHECK(BackoffCeiling(config, 2) == absl::Milliseconds(200));
  CHECK(BackoffCeiling(config, 3) == absl::Milliseconds(400));
  CHECK(BackoffCeiling(config, 4) == absl::Milliseconds(700));
  // Saturates rather than overflowing.
  CHECK(BackoffCeiling(config, 10'000) == absl::Milliseconds(700));
  const BackoffConfig slower{absl::Milliseconds(100), absl::Seconds(10), 1.5};
  CHECK(BackoffCeiling(slower, 2) == absl::Milliseconds(150));
  CHECK(BackoffCeiling(slower, 3) == absl::Milliseconds(225));
}

TEST_CASE("full jitter draws the delay from zero up to the ceiling", "[backoff]") {
  const BackoffConfig config{absl::Milliseconds(100), absl::Seconds(10), 3.0};
  base::testing::ScriptedRandom random({0.0, 0.5, 0.999});
  CHECK(FullJitterBackoff(config, 2, random) == absl::ZeroDuration());
  CHECK(FullJitterBackoff(config, 2, random) == absl::Milliseconds(150));
  const absl::Duration near_top = FullJitterBackoff(config, 2, random);
  CHECK(near_top < absl::Milliseconds(300));
  CHECK(near_top > absl::Milliseconds(299));
}

TEST_CASE("pushback: a non-negative integer is a delay", "[backoff][pushback]") {
  CHECK(ParsePushback("0").kind == Pushback::Kind::kDelay);
  CHECK(ParsePushback("0").delay == absl::ZeroDuration());
  const Pushback pushback = ParsePushback("250");
  CHECK(pushback.kind == Pushback::Kind::kDelay);
  CHECK(pushback.delay == absl::Milliseconds(250));
  CHECK(ParsePushback("9999999999").delay == absl::Milliseconds(9'999'999'999));
}

TEST_CASE("pushback: negative or malformed values mean do not retry", "[backoff][pushback]") {
  for (const char* garbage :
       {"-1", "", " 5", "5 ", "+5", "1.5", "0x10", "abc", "12ms", "99999999999", "1e3"}) {
    INFO("value: '" << garbage << "'");
    CHECK(ParsePushback(garbage).kind == Pushback::Kind::kDoNotRetry);
  }
}

}  // namespace
}  // namespace resilience
