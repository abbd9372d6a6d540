#include "resilience/metrics.h"

#include "base/latency_buckets.h"

#include <limits>

namespace resilience {

std::string_view CallOutcomeName(CallOutcome outcome) {
  static constexpr std::array<std::string_view, kCallOutcomeCount> kNames = {
      "success",           "failure",          "circuit_open", "bulkhead_full",
      "deadline_exceeded", "budget_exhausted", "cancelled",    "throttled"};
  static_assert(!kNames.back().empty(), "every outcome needs its name");
  return kNames[static_cast<std::size_t>(outcome)];
}

void LatencyHistogram::Observe(absl::Duration duration) {
  const double seconds = absl::ToDoubleSeconds(duration);
  const auto& bounds = base::kLatencyBucketsSeconds;
  std::size_t bucket = 0;
  while (bucket < kBuckets && seconds > bounds[bucket]) ++bucket;
  Shard& shard = shards_[base::ShardedCounter::ShardOfThisThread()];
  shard.counts[bucket].fetch_add(1, std::memory_order_relaxed);
  shard.sum_nanos.fetch_add(absl::ToInt64Nanoseconds(duration), std::memory_order_relaxed);
}

prometheus::ClientMetric::Histogram LatencyHistogram::Snapshot() const {
  prometheus::ClientMetric::Histogram histogram;
  const auto& bounds = base::kLatencyBucketsSeconds;
  std::uint64_t cumulative = 0;
  std::int64_t sum_nanos = 0;
  for (const Shard& shard : shards_) sum_nanos += shard.sum_nanos.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i <= kBuckets; ++i) {
    for (const Shard& shard : shards_)
      cumulative += shard.counts[i].load(std::memory_order_relaxed);
    prometheus::ClientMetric::Bucket bucket;
    bucket.cumulative_count = cumulative;
    bucket.upper_bound = i < kBuckets ? bounds[i] : std::numeric_limits<double>::infinity();
    histogram.bucket.push_back(bucket);
  }
  histogram.sample_count = cumulative;
  histogram.sample_sum = static_cast<double>(sum_nanos) / 1'000'000'000.0;
  return histogram;
}

std::vector<prometheus::MetricFamily> EmptyCallFamilies() {
  using prometheus::MetricType;
  const auto family = [](const char* name, const char* help, MetricType type) {
    return prometheus::MetricFamily{name, help, type, {}};
  };
  return {
      family("resilience_calls_total", "Calls through the resilience pipeline, by outcome.",
             MetricType::Counter),
      family("resilience_attempts_total",
             "Attempts sent to the downstream: first attempts, retries and hedges.",
             MetricType::Counter),
      family("resilience_retries_total",
             "Attempts after the first one of a call, sent because an earlier one failed.",
             MetricType::Counter),
      family("resilience_hedges_total",
             "Attempts after the first one of a hedged call (hedging policy).",
             MetricType::Counter),
      family("resilience_call_duration_seconds",
             "Duration of whole calls, including retries and backoff.", MetricType::Histogram),
      family("resilience_attempt_duration_seconds", "Duration of single attempts.",
             MetricType::Histogram),
      family("resilience_bulkhead_in_flight", "Attempts holding a bulkhead slot.",
             MetricType::Gauge),
      family("resilience_retry_budget_tokens",
             "Tokens left in the retry budget; -1 when there is no budget.", MetricType::Gauge),
      family("resilience_circuit_breaker_state",
             "1 for the circuit breaker's current state, 0 for the others.", MetricType::Gauge),
      family("resilience_throttle_probability",
             "Probability that adaptive throttling rejects an attempt locally.", MetricType::Gauge),
      family("resilience_endpoint_ejected",
             "1 while outlier detection keeps the endpoint out of service.", MetricType::Gauge),
      family("resilience_endpoint_ejections_total", "Times the endpoint was ejected.",
             MetricType::Counter),
      family("resilience_endpoint_reachable",
             "0 while the endpoint's connection is failing (refused, unreachable).",
             MetricType::Gauge),
      family("resilience_endpoint_in_flight", "Attempts in flight to the endpoint.",
             MetricType::Gauge),
      family("resilience_endpoint_latency_seconds",
             "The balancer's latency estimate of the endpoint (peak EWMA).", MetricType::Gauge),
      family("resilience_endpoint_attempts_total", "Attempts the endpoint answered.",
             MetricType::Counter),
      family("resilience_endpoint_failures_total",
             "Attempts the endpoint answered with a failure (outlier detection's codes).",
             MetricType::Counter),
  };
}

Metrics::Metrics(prometheus::Registry& registry)
    : breaker_transitions_(prometheus::BuildCounter()
                               .Name("resilience_circuit_breaker_transitions_total")
                               .Help("Circuit breaker state changes.")
                               .Register(registry)) {}

void Metrics::CountTransition(const std::string& target, BreakerState from, BreakerState to) {
  breaker_transitions_
      .Add({{"target", target},
            {"from", std::string(BreakerStateName(from))},
            {"to", std::string(BreakerStateName(to))}})
      .Increment();
}

}  // namespace resilience
