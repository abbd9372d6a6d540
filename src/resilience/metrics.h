// Every Prometheus metric of the resilience library, declared in one place.
//
// Series (labels are bounded: target and method names come from the application's code, states
// and outcomes from fixed lists):
//   resilience_calls_total{target,method,outcome}         calls by how they ended; outcome is
//       success | failure | circuit_open | bulkhead_full | deadline_exceeded | budget_exhausted
//   resilience_attempts_total{target,method}               attempts sent to the network
//   resilience_retries_total{target,method}                attempts after the first
//   resilience_call_duration_seconds{target,method}        whole calls, retries and waits included
//   resilience_attempt_duration_seconds{target,method}     single attempts
//   resilience_circuit_breaker_state{target,state}         1 for the current state, else 0
//   resilience_circuit_breaker_transitions_total{target,from,to}
//   resilience_bulkhead_in_flight{target}                  calls holding a bulkhead slot
//   resilience_retry_budget_tokens{target}                 tokens left (-1: no budget)
//
// Handles are resolved when a target or method is first used, so recording on the call path is
// a few atomic operations with no lookups and no allocation.
#ifndef HOSPITAL_SRC_RESILIENCE_METRICS_H_
#define HOSPITAL_SRC_RESILIENCE_METRICS_H_

#include <array>
#include <string>
#include <string_view>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

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
};
inline constexpr int kCallOutcomeCount = 6;

// The outcome label value: "success", "failure", "circuit_open", "bulkhead_full",
// "deadline_exceeded", "budget_exhausted".
std::string_view CallOutcomeName(CallOutcome outcome);

struct MethodMetrics {
  std::array<prometheus::Counter*, kCallOutcomeCount> calls{};
  prometheus::Counter* attempts = nullptr;
  prometheus::Counter* retries = nullptr;
  prometheus::Histogram* call_duration = nullptr;
  prometheus::Histogram* attempt_duration = nullptr;
};

struct TargetMetrics {
  std::array<prometheus::Gauge*, kBreakerStateCount> breaker_state{};
  prometheus::Gauge* bulkhead_in_flight = nullptr;
  prometheus::Gauge* budget_tokens = nullptr;
};

class Metrics final {
 public:
  // Registers the families in `registry`, which must outlive this object.
  explicit Metrics(prometheus::Registry& registry);

  MethodMetrics ForMethod(const std::string& target, const std::string& method);
  TargetMetrics ForTarget(const std::string& target);
  // Counts a breaker transition (rare: the series is resolved on each call).
  void CountTransition(const std::string& target, BreakerState from, BreakerState to);

 private:
  prometheus::Family<prometheus::Counter>& calls_;
  prometheus::Family<prometheus::Counter>& attempts_;
  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Family<prometheus::Histogram>& call_duration_;
  prometheus::Family<prometheus::Histogram>& attempt_duration_;
  prometheus::Family<prometheus::Gauge>& breaker_state_;
  prometheus::Family<prometheus::Counter>& breaker_transitions_;
  prometheus::Family<prometheus::Gauge>& bulkhead_in_flight_;
  prometheus::Family<prometheus::Gauge>& budget_tokens_;
};

// Latency buckets in seconds, from 0.5 ms to 10 s.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets();

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_METRICS_H_
