#include "fault_bench/capacity.h"

#include <algorithm>
#include <cstdio>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace fault_bench {
namespace {

// Doubles the offered rate from `first` until a step fails the criterion, then bisects three
// times between the last rate that held and the first that did not. Returns every step; the
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
  for (int bisection = 0; bisection < 3 && held > 0 && failed > 0; ++bisection) {
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

// "under test, bench" CPU ms per call of a RecordDeath step.
std::string CpuPerCall(const CapacityStep& step) {
  if (step.cpu_ms_per_call < 0) return "-";
  return absl::StrFormat("%.2f, %.2f", step.cpu_ms_per_call, step.bench_cpu_ms_per_call);
}

// The share of the machine's cores that the processes under test and the bench kept busy over
// the load window: CPU per call times calls per second, over the cores. Other tenants of a
// shared machine are not counted, so 100 % is an upper bound on what the step could use.
std::string MachineBusy(const CapacityStep& step) {
  const unsigned cores = std::thread::hardware_concurrency();
  if (step.cpu_ms_per_call < 0 || cores == 0) return "-";
  const double busy = (step.cpu_ms_per_call + step.bench_cpu_ms_per_call) * step.rate / 1000.0;
  return absl::StrFormat("%.0f", 100 * busy / cores);
}

// One echo set-up measured beside the deaths, and its steps.
struct EchoBaseline {
  std::string name;
  EchoShape shape;
  std::vector<CapacityStep> steps;
};

// One variant's RecordDeath search.
struct DeathSearch {
  std::string variant;
  std::vector<CapacityStep> steps;
};

// A relay drain and the broker setting it ran with.
struct DrainFigures {
  std::string setting;
  RelayDrain drain;
};

std::string CapacityReport(const std::vector<EchoBaseline>& baselines,
                           const std::vector<DeathSearch>& deaths,
                           const std::vector<DrainFigures>& drains, double limit_ms) {
  std::string report = absl::StrFormat(
      "## Capacity\n\nThe highest offered rate held with every call succeeding, p99 (from "
      "intended send time) below %.0f ms, and (for RecordDeath) every acknowledged death's "
      "effects visible within 0.5 s of the load's end, so that a backlog growing during the "
      "load fails the step: doubling the rate and then bisecting three times, 3 s a step. Healthy "
      "system, fresh services, databases and broker for every step. The echoes run on the same "
      "machine with no storage: one RPC to a separate process served with gRPC's callback API "
      "(the plain baseline) or its synchronous API (which the hospital services use), and the "
      "shape of a death without its work: a callback server that forwards each call to two more "
      "echo servers at once, three RPCs per call.\n\n"
      "| load | capacity (calls/s) |\n| --- | --- |\n",
      limit_ms);
  for (const DeathSearch& search : deaths) {
    absl::StrAppendFormat(&report, "| RecordDeath, `%s` | %.0f |\n", search.variant,
                          Capacity(search.steps, limit_ms));
  }
  for (const EchoBaseline& baseline : baselines) {
    absl::StrAppendFormat(&report, "| %s | %.0f |\n", baseline.name,
                          Capacity(baseline.steps, limit_ms));
  }
  for (const DeathSearch& search : deaths) {
    for (const DeathSearch& other : deaths) {
      const double mine = Capacity(search.steps, limit_ms);
      const double theirs = Capacity(other.steps, limit_ms);
      if (&search != &other && search.variant == "async" && theirs > 0) {
        absl::StrAppendFormat(&report, "\n`async` / `%s` capacity, same run: %.2f.\n",
                              other.variant, mine / theirs);
      }
    }
  }
  for (const DeathSearch& search : deaths) {
    const std::size_t suffix = search.variant.rfind(kPostgresSuffix);
    if (suffix == std::string::npos) continue;
    const std::string twin = search.variant.substr(0, suffix);
    for (const DeathSearch& other : deaths) {
      const double theirs = Capacity(other.steps, limit_ms);
      if (other.variant == twin && theirs > 0) {
        absl::StrAppendFormat(&report,
                              "\n`%s` / `%s` capacity (PostgreSQL with a synchronous standby "
                              "over SQLite), same run: %.2f.\n",
                              search.variant, twin, Capacity(search.steps, limit_ms) / theirs);
      }
    }
  }
  report +=
      "\nWhere the CPU went at each search's capacity (the highest step that held), ms per "
      "call by process, and on PostgreSQL the units of work each service ran again after a "
      "serialization failure, per call:\n\n| load | rate/s | CPU ms per call, by process | "
      "units retried per call |\n| --- | --- | --- | --- |\n";
  for (const DeathSearch& search : deaths) {
    const CapacityStep* best = nullptr;
    for (const CapacityStep& step : search.steps) {
      if (step.Holds(limit_ms) && (best == nullptr || step.rate > best->rate)) best = &step;
    }
    if (best == nullptr) continue;
    std::vector<std::string> parts;
    for (const auto& [process, ms] : best->cpu_ms_by_process) {
      parts.push_back(absl::StrFormat("%s %.2f", process, ms));
    }
    std::vector<std::string> retries;
    for (const auto& [service, per_call] : best->db_retries_per_call) {
      retries.push_back(absl::StrFormat("%s %.2f", service, per_call));
    }
    absl::StrAppendFormat(&report, "| RecordDeath, `%s` | %.0f | %s | %s |\n", search.variant,
                          best->rate, absl::StrJoin(parts, ", "),
                          retries.empty() ? "-" : absl::StrJoin(retries, ", "));
  }
  report +=
      "\n| load | offered/s | calls | ok | p99 ms | effects drained after load s | peak RSS MiB "
      "(largest service) | nats-server RSS MiB | CPU ms per call: under test, bench | machine "
      "busy % |\n"
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
  for (const EchoBaseline& baseline : baselines) {
    for (const auto& step : baseline.steps) {
      absl::StrAppendFormat(&report, "| %s | %.0f | %d | %d | %.1f | - | - | - | - | - |\n",
                            baseline.name, step.rate, step.calls, step.ok, step.p99_ms);
    }
  }
  for (const DeathSearch& search : deaths) {
    for (const auto& step : search.steps) {
      absl::StrAppendFormat(
          &report, "| RecordDeath, `%s` | %.0f | %d | %d | %.1f | %.2f | %.1f | %s | %s | %s |\n",
          search.variant, step.rate, step.calls, step.ok, step.p99_ms, step.drained_after_s,
          step.peak_rss_mib,
          step.broker_rss_mib < 0 ? std::string("-") : absl::StrFormat("%.1f", step.broker_rss_mib),
          CpuPerCall(step), MachineBusy(step));
    }
  }
  if (!drains.empty()) {
    report +=
        "\n### The relay draining a backlog\n\nEvents written into the patients service's outbox "
        "while the broker was down (morgue and appointments stopped, so that only the relay and "
        "the broker work), then the broker started on an empty store: the time until the first "
        "event left (reconnection and the relay's backoff), and the rate at which the rest "
        "followed until the outbox was empty (sampled every 10 ms from the service's "
        "hospital_outbox_unpublished gauge).\n\n"
        "| broker file store | events | first left after s | drained in s | events/s | nats-server "
        "RSS MiB |\n| --- | --- | --- | --- | --- | --- |\n";
    for (const DrainFigures& figures : drains) {
      absl::StrAppendFormat(&report, "| %s | %d | %.2f | %.2f | %.0f | %.1f |\n", figures.setting,
                            figures.drain.events, figures.drain.seconds_to_first,
                            figures.drain.seconds_to_empty, figures.drain.events_per_second,
                            figures.drain.broker_rss_mib);
    }
  }
  return report + "\n";
}

// The repeated searches: every variant's capacity in each repeat (the first is the search whose
// steps the tables above show), the medians, and each variant's median over the first's.
std::string RepeatsReport(const std::vector<Variant>& variants,
                          const std::vector<DeathSearch>& deaths,
                          std::vector<std::vector<double>> repeated, double limit_ms) {
  std::string report = absl::StrFormat(
      "### Repeated searches\n\nThe RecordDeath searches ran %d times each, the variants' order "
      "reversed every other time.\n\n| variant | capacities (calls/s) | median | median / "
      "`%s` median |\n| --- | --- | --- | --- |\n",
      static_cast<int>(repeated.front().size()) + 1, variants.front().name);
  std::vector<double> medians;
  for (std::size_t i = 0; i < variants.size(); ++i) {
    repeated[i].insert(repeated[i].begin(), Capacity(deaths[i].steps, limit_ms));
    std::vector<double> sorted = repeated[i];
    std::sort(sorted.begin(), sorted.end());
    const std::size_t n = sorted.size();
    medians.push_back(n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2);
  }
  for (std::size_t i = 0; i < variants.size(); ++i) {
    std::vector<std::string> values;
    for (double value : repeated[i]) values.push_back(absl::StrFormat("%.0f", value));
    absl::StrAppendFormat(&report, "| `%s` | %s | %.0f | %.2f |\n", variants[i].name,
                          absl::StrJoin(values, ", "), medians[i],
                          medians.front() > 0 ? medians[i] / medians.front() : 0.0);
  }
  return report + "\n";
}

}  // namespace

absl::StatusOr<std::string> RunCapacity(const RunOptions& options,
                                        const std::vector<Variant>& variants,
                                        const std::string& echo_binary, double p99_limit_ms,
                                        int repeats) {
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
  std::vector<DeathSearch> deaths;
  std::vector<DrainFigures> drains;
  for (const Variant& variant : variants) {
    std::fprintf(stderr, "capacity: RecordDeath, %s...\n", variant.name.c_str());
    absl::StatusOr<std::vector<CapacityStep>> steps = SearchCapacity(
        25, 12800, p99_limit_ms,
        [&](double rate) { return DeathStep(options, variant, rate, absl::Seconds(3)); });
    if (!steps.ok()) return steps.status();
    deaths.push_back({variant.name, *std::move(steps)});
    if (variant.pattern != Pattern::kAsync) continue;
    // nats-server 2.9 has no setting to sync every write (sync_interval came later); its file
    // store syncs every two minutes.
    std::fprintf(stderr, "capacity: relay drain...\n");
    absl::StatusOr<RelayDrain> drain = MeasureRelayDrain(options, variant, 50000);
    if (!drain.ok()) return drain.status();
    drains.push_back({variant.storage == Storage::kPostgres
                          ? "nats-server 2.9 file store (synced every 2 min), outbox on "
                            "PostgreSQL"
                          : "nats-server 2.9 file store (synced every 2 min)",
                      *drain});
  }
  // Repeated searches after the first, per variant in `variants` order: their capacities, run by
  // run.
  std::vector<std::vector<double>> repeated(variants.size());
  for (int repeat = 1; repeat < repeats; ++repeat) {
    for (std::size_t k = 0; k < variants.size(); ++k) {
      // Every other repeat reverses the order, so that drift favours no variant.
      const std::size_t i = repeat % 2 == 1 ? variants.size() - 1 - k : k;
      std::fprintf(stderr, "capacity: RecordDeath, %s, repeat %d...\n", variants[i].name.c_str(),
                   repeat + 1);
      absl::StatusOr<std::vector<CapacityStep>> steps = SearchCapacity(
          25, 12800, p99_limit_ms,
          [&](double rate) { return DeathStep(options, variants[i], rate, absl::Seconds(3)); });
      if (!steps.ok()) return steps.status();
      repeated[i].push_back(Capacity(*steps, p99_limit_ms));
    }
  }
  std::string report = CapacityReport(baselines, deaths, drains, p99_limit_ms);
  if (repeats > 1) report += RepeatsReport(variants, deaths, repeated, p99_limit_ms);
  return report;
}

}  // namespace fault_bench
