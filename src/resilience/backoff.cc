#include "resilience/backoff.h"

#include <cmath>
#include <cstdint>

namespace resilience {

absl::Duration BackoffCeiling(const BackoffConfig& config, int retry_number) {
  if (retry_number < 1) retry_number = 1;
  // Computed in floating point and clamped, so large retry numbers saturate at max_backoff
  // instead of overflowing.
  const double growth = std::pow(config.multiplier, retry_number - 1);
  const double ceiling_seconds = absl::ToDoubleSeconds(config.initial_backoff) * growth;
  const double max_seconds = absl::ToDoubleSeconds(config.max_backoff);
  if (!(ceiling_seconds < max_seconds)) return config.max_backoff;
  return absl::Seconds(ceiling_seconds);
}

absl::Duration FullJitterBackoff(const BackoffConfig& config, int retry_number,
                                 base::RandomSource& random) {
  return BackoffCeiling(config, retry_number) * random.Uniform01();
}

Pushback ParsePushback(std::string_view value) {
  constexpr Pushback kDoNotRetry{Pushback::Kind::kDoNotRetry, absl::ZeroDuration()};
  // More than 10 digits cannot be a sensible delay (over 115 days) and could overflow.
  if (value.empty() || value.size() > 10) return kDoNotRetry;
  std::int64_t milliseconds = 0;
  for (char c : value) {
    if (c < '0' || c > '9') return kDoNotRetry;
    milliseconds = milliseconds * 10 + (c - '0');
  }
  return Pushback{Pushback::Kind::kDelay, absl::Milliseconds(milliseconds)};
}

}  // namespace resilience
