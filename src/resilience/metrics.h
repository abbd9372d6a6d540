// Every Prometheus metric of the resilience library, declared in one place.
//
// Series (labels are bounded: target names come from the application's code, states and
// outcomes from fixed lists, and each target gives its own series to at most
// kMaxMethodSeriesPerTarget method names, counting calls to any further name under
// method="other", so that a caller passing names it did not write cannot grow them without
// end):
//   resilience_calls_total{target,method,outcome}         calls by how they ended; outcome is
//       success | failure | circuit_open | bulkhead_full | deadline_exceeded | budget_exhausted
//       | cancelled (the caller cancelled it) | throttled (adaptive throttling rejected it)
//   resilience_attempts_total{target,method}               attempts sent to the network
//   resilience_retries_total{target,method}                attempts after the first, sent
//                                                          because an earlier one failed
//   resilience_hedges_total{target,method}                 attempts after the first of a
//                                                          hedged call
//   resilience_call_duration_seconds{target,method}        whole calls, retries and waits included
//   resilience_attempt_duration_seconds{target,method}     single attempts
//   resilience_circuit_breaker_state{target,state}         1 for the current state, else 0
//   resilience_circuit_breaker_transitions_total{target,from,to}
//   resilience_bulkhead_in_flight{target}                  calls holding a bulkhead slot
//   resilience_retry_budget_tokens{target}                 tokens left (-1: no budget)
//   resilience_throttle_probability{target}                adaptive throttling's rejection
//                                                          probability (absent: not configured)
//
// The per-call series (the first six, and the bulkhead and budget gauges) are not prometheus-cpp
// objects: prometheus-cpp's histogram takes a mutex on every observation and its counters
// update a double with a compare-and-swap loop, which together cost about 2 % of a loopback
// call's throughput. The pipeline records them in integer atomics sharded by thread
// (MethodMetrics: threads calling one method do not share a cache line) and
// TargetRegistry::call_metrics() turns them into metric families when scraped; the bulkhead and
// budget gauges are read from the bulkhead and the budget at that moment, and so is the breaker
// state (one read of the state per scrape, so the five state series always agree). The
// transition counter changes only on transitions and stays in the prometheus::Registry.
#ifndef HOSPITAL_SRC_RESILIENCE_METRICS_H_
#define HOSPITAL_SRC_RESILIENCE_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/client_metric.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include "absl/time/time.h"
#include "base/latency_buckets.h"
#include "base/sharded_counter.h"
#include "resilience/circuit_breaker.h"

namespace resilience {

// How a call ended, as counted in resilience_calls_total.
enum class CallOutcome {
  kSuccess,
  kFailure,
  kRejectedByBreaker,
  kRejectedByBulkhead,
  kDeadlineExceeded,
  kRetryBudgetExhausted,
  kCancelled,
  kThrottled,
};
inline constexpr int kCallOutcomeCount = 8;

// The outcome label value: "success", "failure", "circuit_open", "bulkhead_full",
// "deadline_exceeded", "budget_exhausted", "cancelled", "throttled".
std::string_view CallOutcomeName(CallOutcome outcome);

// A counter on the call path: one atomic add into this thread's shard (base::ShardedCounter),
// no lock, no cache line shared with a thread on another shard; a scrape adds the shards up.
class CallCounter final {
 public:
  void Increment() { value_.Add(1); }
  std::uint64_t value() const { return static_cast<std::uint64_t>(value_.Sum()); }

 private:
  base::ShardedCounter value_;
};

// A latency histogram on the call path with the base::kLatencyBucketsSeconds boundaries: two
// atomic adds per observation into this thread's shard, no lock; a scrape adds the shards up. A
// scrape may see an observation's bucket before its sum; the next scrape is consistent again,
// which Prometheus's rate() tolerates.
class LatencyHistogram final {
 public:
  static constexpr std::size_t kBuckets = base::kLatencyBucketsSeconds.size();
  static constexpr std::size_t kShards = base::ShardedCounter::kShards;

  void Observe(absl::Duration duration);
  prometheus::ClientMetric::Histogram Snapshot() const;

 private:
  struct alignas(64) Shard {
    std::array<std::atomic<std::uint64_t>, kBuckets + 1> counts{};  // The last one is +Inf.
    std::atomic<std::int64_t> sum_nanos{0};
  };
  std::array<Shard, kShards> shards_{};
};

struct MethodMetrics {
  std::array<CallCounter, kCallOutcomeCount> calls;
  CallCounter attempts;
  CallCounter retries;
  CallCounter hedges;
  LatencyHistogram call_duration;
  LatencyHistogram attempt_duration;
};

// The per-call series as metric families without samples, indexed by CallFamily; filled by
// TargetRegistry::call_metrics() on each scrape.
enum class CallFamily {
  kCalls,
  kAttempts,
  kRetries,
  kHedges,
  kCallDuration,
  kAttemptDuration,
  kBulkheadInFlight,
  kBudgetTokens,
  kBreakerState,
  kThrottleProbability,
  kEndpointEjected,
  kEndpointEjections,
  kEndpointReachable,
  kEndpointInFlight,
  kEndpointLatency,
  kEndpointAttempts,
  kEndpointFailures,
};

// Endpoints of one target with series of their own (label `endpoint`, the address); the rest
// are summed under "other" (the latency estimate is left out for them).
inline constexpr int kMaxEndpointSeriesPerTarget = 32;

// Method names of one target with series of their own; calls to others count as "other".
inline constexpr int kMaxMethodSeriesPerTarget = 100;
inline constexpr char kOtherMethodLabel[] = "other";
std::vector<prometheus::MetricFamily> EmptyCallFamilies();

// The breaker transition series, in a prometheus::Registry.
class Metrics final {
 public:
  // Registers the family in `registry`, which must outlive this object.
  explicit Metrics(prometheus::Registry& registry);

  // Counts a breaker transition (rare: the series is resolved on each call).
  void CountTransition(const std::string& target, BreakerState from, BreakerState to);

 private:
  prometheus::Family<prometheus::Counter>& breaker_transitions_;
};

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_METRICS_H_
