// Retry delays: exponential backoff with full jitter, and the server's pushback.
//
// Full jitter (see "Exponential Backoff And Jitter", AWS Architecture Blog, and gRFC A6): the
// delay before retry n (n = 1 for the first retry) is drawn uniformly from
// [0, min(max_backoff, initial_backoff * multiplier^(n-1))). Spreading retries over the whole
// interval stops clients that failed together from retrying together.
#ifndef HOSPITAL_SRC_RESILIENCE_BACKOFF_H_
#define HOSPITAL_SRC_RESILIENCE_BACKOFF_H_

#include <string_view>

#include "absl/time/time.h"
#include "base/clock.h"

namespace resilience {

struct BackoffConfig {
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(1);
  double multiplier = 2.0;
};

// The upper bound of the delay before retry `retry_number` (1-based), before jitter.
absl::Duration BackoffCeiling(const BackoffConfig& config, int retry_number);

// The jittered delay before retry `retry_number`, drawing from `random`.
absl::Duration FullJitterBackoff(const BackoffConfig& config, int retry_number,
                                 base::RandomSource& random);

// The server's say in the next retry, from the `grpc-retry-pushback-ms` trailer (gRFC A6).
struct Pushback {
  enum class Kind {
    kNone,        // No trailer: use the backoff.
    kDelay,       // A valid value: wait exactly `delay`, instead of the backoff.
    kDoNotRetry,  // A negative or malformed value: the server asks not to be retried.
  };
  Kind kind = Kind::kNone;
  absl::Duration delay = absl::ZeroDuration();
};

// The metadata key that carries pushback.
inline constexpr std::string_view kPushbackMetadataKey = "grpc-retry-pushback-ms";

// Interprets a trailer value: a non-negative decimal integer of milliseconds is a delay; anything
// else (negative, empty, signs, spaces, overflow, non-digits) means do not retry.
Pushback ParsePushback(std::string_view value);

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_BACKOFF_H_
