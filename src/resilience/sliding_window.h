// The sliding windows a circuit breaker judges: the last N calls, or the calls of the last N
// seconds. Not thread-safe; the breaker guards them with its mutex. No allocation after
// construction.
#ifndef HOSPITAL_SRC_RESILIENCE_SLIDING_WINDOW_H_
#define HOSPITAL_SRC_RESILIENCE_SLIDING_WINDOW_H_

#include <cstdint>
#include <vector>

#include "absl/time/time.h"

namespace resilience {

// Totals over a window.
struct WindowCounts {
  std::uint32_t calls = 0;
  std::uint32_t failures = 0;
  std::uint32_t slow_calls = 0;

  double failure_rate_percent() const { return calls == 0 ? 0.0 : 100.0 * failures / calls; }
  double slow_call_rate_percent() const { return calls == 0 ? 0.0 : 100.0 * slow_calls / calls; }
};

class SlidingWindow {
 public:
  virtual ~SlidingWindow() = default;
  // Adds one call's outcome, observed at `now`.
  virtual void Record(absl::Time now, bool failure, bool slow) = 0;
  // The totals as of `now` (a time window drops the seconds that have slid out).
  virtual WindowCounts Counts(absl::Time now) = 0;
  virtual void Clear() = 0;
};

// The last `size` calls, in a ring buffer.
class CountWindow final : public SlidingWindow {
 public:
  explicit CountWindow(std::uint32_t size);
  void Record(absl::Time now, bool failure, bool slow) override;
  WindowCounts Counts(absl::Time now) override;
  void Clear() override;

 private:
  static constexpr std::uint8_t kFailure = 1;
  static constexpr std::uint8_t kSlow = 2;
  std::vector<std::uint8_t> outcomes_;
  std::size_t next_ = 0;
  WindowCounts totals_;
};

// The calls of the last `seconds` whole seconds, one bucket per second.
class TimeWindow final : public SlidingWindow {
 public:
  explicit TimeWindow(std::uint32_t seconds);
  void Record(absl::Time now, bool failure, bool slow) override;
  WindowCounts Counts(absl::Time now) override;
  void Clear() override;

 private:
  struct Bucket {
    std::int64_t second = 0;
    WindowCounts counts;
  };
  // Empties the buckets of seconds that have left the window ending at `second`.
  void SlideTo(std::int64_t second);

  std::vector<Bucket> buckets_;
  std::int64_t newest_second_ = 0;
  WindowCounts totals_;
};

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_SLIDING_WINDOW_H_
