#include "resilience/metrics.h"

namespace resilience {

std::string_view CallOutcomeName(CallOutcome outcome) {
  static constexpr std::array<std::string_view, kCallOutcomeCount> kNames = {
      "success",       "failure",           "circuit_open",
      "bulkhead_full", "deadline_exceeded", "budget_exhausted"};
  return kNames[static_cast<std::size_t>(outcome)];
}

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* const buckets = new prometheus::Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return *buckets;
}

Metrics::Metrics(prometheus::Registry& registry)
    : calls_(prometheus::BuildCounter()
                 .Name("resilience_calls_total")
                 .Help("Calls through the resilience pipeline, by outcome.")
                 .Register(registry)),
      attempts_(prometheus::BuildCounter()
                    .Name("resilience_attempts_total")
                    .Help("Attempts sent to the downstream, first attempts and retries.")
                    .Register(registry)),
      retries_(prometheus::BuildCounter()
                   .Name("resilience_retries_total")
                   .Help("Attempts after the first one of a call.")
                   .Register(registry)),
      call_duration_(prometheus::BuildHistogram()
                         .Name("resilience_call_duration_seconds")
                         .Help("Duration of whole calls, including retries and backoff.")
                         .Register(registry)),
      attempt_duration_(prometheus::BuildHistogram()
                            .Name("resilience_attempt_duration_seconds")
                            .Help("Duration of single attempts.")
                            .Register(registry)),
      breaker_state_(prometheus::BuildGauge()
                         .Name("resilience_circuit_breaker_state")
                         .Help("1 for the circuit breaker's current state, 0 for the others.")
                         .Register(registry)),
      breaker_transitions_(prometheus::BuildCounter()
                               .Name("resilience_circuit_breaker_transitions_total")
                               .Help("Circuit breaker state changes.")
                               .Register(registry)),
      bulkhead_in_flight_(prometheus::BuildGauge()
                              .Name("resilience_bulkhead_in_flight")
                              .Help("Attempts holding a bulkhead slot.")
                              .Register(registry)),
      budget_tokens_(prometheus::BuildGauge()
                         .Name("resilience_retry_budget_tokens")
                         .Help("Tokens left in the retry budget; -1 when there is no budget.")
                         .Register(registry)) {}

MethodMetrics Metrics::ForMethod(const std::string& target, const std::string& method) {
  MethodMetrics metrics;
  for (int i = 0; i < kCallOutcomeCount; ++i) {
    metrics.calls[static_cast<std::size_t>(i)] =
        &calls_.Add({{"target", target},
                     {"method", method},
                     {"outcome", std::string(CallOutcomeName(static_cast<CallOutcome>(i)))}});
  }
  metrics.attempts = &attempts_.Add({{"target", target}, {"method", method}});
  metrics.retries = &retries_.Add({{"target", target}, {"method", method}});
  metrics.call_duration =
      &call_duration_.Add({{"target", target}, {"method", method}}, LatencyBuckets());
  metrics.attempt_duration =
      &attempt_duration_.Add({{"target", target}, {"method", method}}, LatencyBuckets());
  return metrics;
}

TargetMetrics Metrics::ForTarget(const std::string& target) {
  TargetMetrics metrics;
  for (int i = 0; i < kBreakerStateCount; ++i) {
    metrics.breaker_state[static_cast<std::size_t>(i)] = &breaker_state_.Add(
        {{"target", target},
         {"state", std::string(BreakerStateName(static_cast<BreakerState>(i)))}});
  }
  metrics.bulkhead_in_flight = &bulkhead_in_flight_.Add({{"target", target}});
  metrics.budget_tokens = &budget_tokens_.Add({{"target", target}});
  return metrics;
}

void Metrics::CountTransition(const std::string& target, BreakerState from, BreakerState to) {
  breaker_transitions_
      .Add({{"target", target},
            {"from", std::string(BreakerStateName(from))},
            {"to", std::string(BreakerStateName(to))}})
      .Increment();
}

}  // namespace resilience
