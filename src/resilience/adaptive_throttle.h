// Client-side adaptive throttling, as in the Google SRE book ("Handling Overload"): the client
// keeps, over a sliding window, how many requests it attempted and how many the backend
// accepted, and rejects a new request locally with probability
//
//     max(0, (requests - K x accepts) / (requests + 1))
//
// so that once the backend rejects more than it accepts (by a margin K), most of the excess is
// turned away before it costs the backend anything, while a healthy backend (accepts ==
// requests) is never throttled. Requests rejected locally count as requests: the probability
// keeps up with the demand, and falls back as the backend accepts again. A sent request is
// counted when it is answered, together with its answer.
//
// A request is accepted unless its attempt ended with one of `rejection_codes` (by default
// RESOURCE_EXHAUSTED and UNAVAILABLE: the backend saying it is overloaded or cannot serve).
//
// The window is per second, with a bucket per second of `window_seconds`, spread over shards
// like base::ShardedCounter so that threads do not share counters. The probability is
// recomputed from the merged buckets at most every kRefresh (by whichever call notices that it
// is stale), so the hot path is two uncontended counter updates and one atomic load.
//
// Thread-safe.
#ifndef HOSPITAL_SRC_RESILIENCE_ADAPTIVE_THROTTLE_H_
#define HOSPITAL_SRC_RESILIENCE_ADAPTIVE_THROTTLE_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "base/sharded_counter.h"
#include "base/status.h"
#include "base/sync.h"

namespace resilience {

struct AdaptiveThrottleConfig {
  bool enabled = false;
  double k = 2.0;  // The SRE book's multiplier: 2 lets through twice what the backend accepts.
  std::uint32_t window_seconds = 120;
  base::StatusCodeSet rejection_codes = {absl::StatusCode::kResourceExhausted,
                                         absl::StatusCode::kUnavailable};
};

class AdaptiveThrottle final {
 public:
  // How often the probability is recomputed from the window, at most.
  static constexpr absl::Duration kRefresh = absl::Milliseconds(100);

  AdaptiveThrottle(const AdaptiveThrottleConfig& config, base::RandomSource& random);

  bool enabled() const { return config_.enabled; }
  // Decides whether a request at `now` may be sent: false means rejected locally (and counted
  // as a request then). Always true when disabled.
  bool Admit(absl::Time now);
  // Counts an answered request: accepted unless `code` is a rejection code. (A sent request
  // is counted when its answer comes, with it, so that requests still in flight, a burst at
  // start-up say, do not look like rejections.) A request sent without asking Admit (a circuit
  // breaker's probe) is counted here too.
  void RecordOutcome(absl::StatusCode code, absl::Time now);
  // The rejection probability as of `now`, recomputed if stale. 0 when disabled.
  double RejectionProbability(absl::Time now);

 private:
  struct Bucket {
    std::int64_t second = 0;
    std::uint64_t requests = 0;
    std::uint64_t accepts = 0;
  };
  struct alignas(64) Shard {
    base::Mutex mutex;
    std::vector<Bucket> buckets ABSL_GUARDED_BY(mutex);
  };
  // Adds to this thread's bucket for `now`.
  void Count(absl::Time now, std::uint64_t requests, std::uint64_t accepts);
  double Refresh(absl::Time now);

  const AdaptiveThrottleConfig config_;
  base::RandomSource& random_;
  std::array<Shard, base::ShardedCounter::kShards> shards_;
  std::atomic<double> probability_{0.0};
  std::atomic<std::int64_t> refreshed_at_nanos_{0};
};

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_ADAPTIVE_THROTTLE_H_
