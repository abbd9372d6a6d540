#include "fault_bench/capacity.h"

#include <cstdio>

#include "absl/strings/str_format.h"

namespace fault_bench {
namespace {

// Doubles the offered rate from `first` until a step fails the criterion, then bisects twice
// between the last rate that held and the first that did not. Returns every step; the
// capacity is the highest rate that held.
template <typename StepFunction>
absl::StatusOr<std::vector<CapacityStep>> SearchCapacity(double first, double last, double limit_ms,
                                                         StepFunction step) {
  std::vector<CapacityStep> steps;
  double held = 0;
  double failed = 0;
  for (double rate = first; rate <= last; rate *= 2) {
    absl::StatusOr<CapacityStep> result = step(rate);
    if (!result.ok()) return result.status();
    steps.push_back(*result);
    if (!result->Holds(limit_ms)) {
      failed = rate;
      break;
    }
    held = rate;
  }
  for (int bisection = 0; bisection < 2 && held > 0 && failed > 0; ++bisection) {
    const double rate = (held + failed) / 2;
    absl::StatusOr<CapacityStep> result = step(rate);
    if (!result.ok()) return result.status();
    steps.push_back(*result);
    (result->Holds(limit_ms) ? held : failed) = rate;
  }
  return steps;
}

double Capacity(const std::vector<CapacityStep>& steps, double limit_ms) {
  double best = 0;
  for (const auto& step : steps) {
    if (step.Holds(limit_ms)) best = std::max(best, step.rate);
  }
  return best;
}

// One echo set-up measured beside the deaths, and its steps.
struct EchoBaseline {
  std::string name;
  EchoShape shape;
  std::vector<CapacityStep> steps;
};

std::string CapacityReport(const std::vector<EchoBaseline>& baselines,
                           const std::vector<CapacityStep>& deaths, const std::string& variant,
                           double limit_ms) {
  const double death_capacity = Capacity(deaths, limit_ms);
  std::string report = absl::StrFormat(
      "## Capacity\n\nThe highest offered rate held with every call succeeding and p99 (from "
      "intended send time) below %.0f ms, doubling the rate and then bisecting twice. "
      "Healthy system, variant `%s`, fresh services and databases for every step. The echoes "
      "run on the same machine with no storage: one RPC to a separate process served with "
      "gRPC's callback API (the plain baseline) or its synchronous API (which the hospital "
      "services use), and the shape of a death without its work: a callback server that "
      "forwards each call to two more echo servers at once, three RPCs per call.\n\n"
      "| load | capacity (calls/s) | deaths / this |\n| --- | --- | --- |\n"
      "| RecordDeath | %.0f | |\n",
      limit_ms, variant, death_capacity);
  for (const EchoBaseline& baseline : baselines) {
    const double capacity = Capacity(baseline.steps, limit_ms);
    absl::StrAppendFormat(&report, "| %s | %.0f | %.3f |\n", baseline.name, capacity,
                          capacity > 0 ? death_capacity / capacity : 0.0);
  }
  report +=
      "\n| load | offered/s | calls | ok | p99 ms | peak RSS MiB (largest service) |\n"
      "| --- | --- | --- | --- | --- | --- |\n";
  for (const EchoBaseline& baseline : baselines) {
    for (const auto& step : baseline.steps) {
      absl::StrAppendFormat(&report, "| %s | %.0f | %d | %d | %.1f | - |\n", baseline.name,
                            step.rate, step.calls, step.ok, step.p99_ms);
    }
  }
  for (const auto& step : deaths) {
    absl::StrAppendFormat(&report, "| RecordDeath | %.0f | %d | %d | %.1f | %.1f |\n", step.rate,
                          step.calls, step.ok, step.p99_ms, step.peak_rss_mib);
  }
  return report + "\n";
}

}  // namespace

absl::StatusOr<std::string> RunCapacity(const RunOptions& options, const Variant& variant,
                                        const std::string& echo_binary, double p99_limit_ms) {
  std::vector<EchoBaseline> baselines = {
      {"one-hop echo, callback server", {"callback", 0}, {}},
      {"one-hop echo, synchronous server", {"sync", 0}, {}},
      {"fan-out echo (1 + 2 RPCs), callback servers", {"callback", 2}, {}}};
  for (EchoBaseline& baseline : baselines) {
    std::fprintf(stderr, "capacity: %s...\n", baseline.name.c_str());
    absl::StatusOr<std::vector<CapacityStep>> steps =
        SearchCapacity(1000, 256000, p99_limit_ms, [&](double rate) {
          return EchoStep(options, echo_binary, baseline.shape, rate, absl::Seconds(2));
        });
    if (!steps.ok()) return steps.status();
    baseline.steps = *std::move(steps);
  }
  std::fprintf(stderr, "capacity: RecordDeath...\n");
  absl::StatusOr<std::vector<CapacityStep>> deaths = SearchCapacity(
      25, 12800, p99_limit_ms,
      [&](double rate) { return DeathStep(options, variant, rate, absl::Seconds(3)); });
  if (!deaths.ok()) return deaths.status();
  return CapacityReport(baselines, *deaths, variant.name, p99_limit_ms);
}

}  // namespace fault_bench
