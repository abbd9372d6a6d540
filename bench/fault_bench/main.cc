// fault_bench: runs fault scenarios against integration variants of the hospital and reports
// latency, availability, amplification and consistency side by side.
//
//   fault_bench --out=bench/report                      # every scenario x every variant
//   fault_bench --scenarios=morgue_down --variants=naive,resilient --out=/tmp/report
//
// Each run starts fresh copies of the three services (separate processes, fresh databases),
// seeds patients with appointments, drives an open-loop load of RecordDeath plus background
// GetPatient and ListAppointments reads, applies the scenario's fault timeline, then checks that
// the services agree.
// Output: report.md (side-by-side table and a paragraph per claim) and results.json (raw data).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/status.h"
#include "fault_bench/charts.h"
#include "fault_bench/findings.h"
#include "fault_bench/run.h"
#include "fault_bench/scenario.h"
#include "fault_bench/summary.h"

ABSL_FLAG(std::string, scenarios, "all", "Comma-separated scenario names, or all");
ABSL_FLAG(std::string, variants, "naive,retries,resilient",
          "Comma-separated variants; each is a policy file <policy_dir>/<name>.json");
ABSL_FLAG(std::string, out, "fault-report", "Directory for report.md and results.json");
ABSL_FLAG(std::string, binary_dir, HOSPITAL_BINARY_DIR "/src", "Where the service binaries are");
ABSL_FLAG(std::string, policy_dir, HOSPITAL_SOURCE_DIR "/bench/policies",
          "Where the variants' policy files are");
ABSL_FLAG(double, rate_scale, 1.0, "Multiplies every scenario's request rates");
ABSL_FLAG(double, time_scale, 1.0, "Multiplies every scenario's duration and fault times");
ABSL_FLAG(std::string, machine, "", "Description of the machine, for the report");
ABSL_FLAG(std::vector<std::string>, service_flags, {},
          "Comma-separated extra flags for all three services, e.g. "
          "--service_flags=--sqlite_synchronous=NORMAL");
ABSL_FLAG(bool, capacity, false,
          "Also find the highest RecordDeath rate the healthy system holds with p99 under "
          "--p99_limit_ms (variant --capacity_variant), and the same for a one-hop echo");
ABSL_FLAG(double, p99_limit_ms, 50, "The capacity criterion: p99 below this, no failed call");
ABSL_FLAG(std::string, capacity_variant, "resilient", "Variant of the capacity run");
ABSL_FLAG(std::string, echo_binary, HOSPITAL_BINARY_DIR "/src/testing_support/echo_server",
          "The echo server of the capacity baseline");

namespace {

using fault_bench::CallSample;
using fault_bench::FailedWhileOpenP99;
using fault_bench::RunResult;
using fault_bench::Summarise;
using fault_bench::Summary;

std::string Json(const RunResult& run) {
  const Summary deaths = Summarise(run.deaths, run.duration);
  const Summary reads = Summarise(run.reads, run.duration);
  const Summary appointment_reads = Summarise(run.appointment_reads, run.duration);
  std::string samples;
  for (const CallSample& sample : run.deaths) {
    absl::StrAppend(
        &samples, samples.empty() ? "" : ",",
        absl::StrFormat("[%.4f,%.3f,%d]", absl::ToDoubleSeconds(sample.intended_offset),
                        absl::ToDoubleMilliseconds(sample.latency), static_cast<int>(sample.code)));
  }
  std::string breakers;
  for (const auto& sample : run.breakers) {
    absl::StrAppend(&breakers, breakers.empty() ? "" : ",",
                    absl::StrFormat("[%.2f,\"%s\",\"%s\"]", absl::ToDoubleSeconds(sample.offset),
                                    sample.target, sample.state));
  }
  std::string open;
  for (const auto& [target, seconds] : run.breaker_open_seconds) {
    absl::StrAppend(&open, open.empty() ? "" : ",",
                    absl::StrFormat("\"%s\":%.1f", target, seconds));
  }
  std::string rss;
  for (const auto& [service, bytes] : run.peak_resident_bytes) {
    absl::StrAppend(&rss, rss.empty() ? "" : ",", absl::StrFormat("\"%s\":%d", service, bytes));
  }
  return absl::StrFormat(
      "{\"scenario\":\"%s\",\"variant\":\"%s\",\"duration_s\":%.1f,"
      "\"deaths\":{\"calls\":%d,\"ok\":%d,\"throughput\":%.2f,\"p50_ms\":%.2f,\"p90_ms\":%.2f,"
      "\"p99_ms\":%.2f,\"p999_ms\":%.2f,\"max_ms\":%.2f,\"failed_p99_ms\":%.2f},"
      "\"reads\":{\"calls\":%d,\"ok\":%d,\"p99_ms\":%.2f},"
      "\"appointment_reads\":{\"calls\":%d,\"ok\":%d,\"p99_ms\":%.2f},"
      "\"failed_while_breaker_open_p99_ms\":%.2f,\"rejected_by_breaker\":%d,"
      "\"rejected_by_breaker_p99_ms\":%.2f,"
      "\"morgue_attempts_per_death\":%.3f,\"appointments_attempts_per_death\":%.3f,"
      "\"breaker_open_s\":{%s},\"violations\":%d,\"consistency_incomplete\":%s,"
      "\"time_to_consistency_s\":%.2f,\"peak_rss_bytes\":{%s},"
      "\"death_samples\":[%s],\"breaker_samples\":[%s]}",
      run.scenario, run.variant, absl::ToDoubleSeconds(run.duration), deaths.calls, deaths.ok,
      deaths.throughput, deaths.p50, deaths.p90, deaths.p99, deaths.p999, deaths.max,
      deaths.failed_p99, reads.calls, reads.ok, reads.p99, appointment_reads.calls,
      appointment_reads.ok, appointment_reads.p99, FailedWhileOpenP99(run),
      fault_bench::RejectedByBreaker(run).calls, fault_bench::RejectedByBreaker(run).p99,
      run.morgue_attempts_per_death, run.appointments_attempts_per_death, open,
      run.consistency.violations, run.consistency.incomplete ? "true" : "false",
      absl::ToDoubleSeconds(run.time_to_consistency), rss, samples, breakers);
}

std::string Report(const std::vector<fault_bench::Scenario>& scenarios,
                   const std::vector<RunResult>& runs, const std::string& machine,
                   absl::Duration elapsed, bool charts, const std::string& capacity) {
  std::string report = "# Fault-injection benchmark\n\n";
  absl::StrAppend(
      &report, "Machine: ", machine.empty() ? "not stated" : machine,
      ". Suite time: ", absl::FormatDuration(absl::Trunc(elapsed, absl::Seconds(1))),
      ".\n\nLatencies are measured from each call's intended send time (open-loop "
      "load), so a stalled system cannot hide its delay. Attempts per death count "
      "what the patients service sent to the morgue's AdmitDeceased per RecordDeath "
      "call. \"Failed while open\" counts failed calls sent while the morgue's breaker was "
      "sampled OPEN (every 100 ms), so half-open probes between samples are among "
      "them; \"rejected by breaker\" counts only the calls the patients service "
      "refused because a breaker was open. Time to consistency runs from the end of the last fault "
      "(of the load, "
      "if there is none) until the three services agree: until the patients "
      "service owes no more undo calls (sampled every 100 ms), confirmed by a full "
      "check after the load, or until the first full check that passes.\n\n");
  report += capacity;
  for (const fault_bench::Scenario& scenario : scenarios) {
    absl::StrAppend(&report, "## ", scenario.name, "\n\n", scenario.claim, "\n\n");
    std::vector<std::string> windows;
    for (const auto& [from, to] : scenario.FaultWindows()) {
      windows.push_back(
          absl::StrFormat("%.1f-%.1f s", absl::ToDoubleSeconds(from), absl::ToDoubleSeconds(to)));
    }
    absl::StrAppendFormat(
        &report,
        "Load: %.0f deaths/s and %.0f reads/s (GetPatient and ListAppointments in turn) "
        "for %.0f s. Faults: %s.\n\n",
        scenario.deaths_per_second, scenario.reads_per_second,
        absl::ToDoubleSeconds(scenario.duration),
        windows.empty() ? "none" : absl::StrJoin(windows, ", "));
    absl::StrAppend(
        &report,
        "| variant | deaths ok | deaths/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms "
        "| failed p99 ms | failed while open p99 ms | rejected by breaker: calls, p99 ms "
        "| GetPatient p99 ms | ListAppointments p99 ms | morgue attempts/death | breaker open s "
        "| violations "
        "| consistent after s | peak RSS MiB |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- | --- | --- | --- |\n");
    std::vector<const RunResult*> scenario_runs;
    for (const RunResult& run : runs) {
      if (run.scenario != scenario.name) continue;
      scenario_runs.push_back(&run);
      const Summary deaths = Summarise(run.deaths, run.duration);
      const Summary reads = Summarise(run.reads, run.duration);
      const Summary appointment_reads = Summarise(run.appointment_reads, run.duration);
      const double failed_while_open = FailedWhileOpenP99(run);
      const fault_bench::BreakerRejections rejected = fault_bench::RejectedByBreaker(run);
      absl::StrAppendFormat(
          &report,
          "| %s | %d/%d (%.1f%%) | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %s | %s | "
          "%.1f | %.1f | %.2f | %.1f | %d%s | %.1f | %.1f |\n",
          run.variant, deaths.ok, deaths.calls, deaths.success_percent, deaths.throughput,
          deaths.p50, deaths.p90, deaths.p99, deaths.p999, deaths.max, deaths.failed_p99,
          failed_while_open < 0 ? std::string("-") : absl::StrFormat("%.1f", failed_while_open),
          rejected.calls == 0 ? std::string("-")
                              : absl::StrFormat("%d, %.1f", rejected.calls, rejected.p99),
          reads.p99, appointment_reads.p99, run.morgue_attempts_per_death,
          fault_bench::BreakerOpenSeconds(run), run.consistency.violations,
          run.consistency.incomplete ? " (incomplete)" : "",
          absl::ToDoubleSeconds(run.time_to_consistency), fault_bench::PeakResidentMiB(run));
    }
    absl::StrAppend(&report, "\n", fault_bench::Findings(scenario, scenario_runs), "\n");
    if (charts) {
      absl::StrAppend(&report, "\n![", scenario.name, "](", scenario.name, ".png)\n");
    }
    absl::StrAppend(&report, "\n");
  }
  return report;
}

// Doubles the offered rate from `first` until a step fails the criterion, then bisects twice
// between the last rate that held and the first that did not. Returns every step; the
// capacity is the highest rate that held.
template <typename StepFunction>
absl::StatusOr<std::vector<fault_bench::CapacityStep>> SearchCapacity(double first, double last,
                                                                      double limit_ms,
                                                                      StepFunction step) {
  std::vector<fault_bench::CapacityStep> steps;
  double held = 0;
  double failed = 0;
  for (double rate = first; rate <= last; rate *= 2) {
    absl::StatusOr<fault_bench::CapacityStep> result = step(rate);
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
    absl::StatusOr<fault_bench::CapacityStep> result = step(rate);
    if (!result.ok()) return result.status();
    steps.push_back(*result);
    (result->Holds(limit_ms) ? held : failed) = rate;
  }
  return steps;
}

double Capacity(const std::vector<fault_bench::CapacityStep>& steps, double limit_ms) {
  double best = 0;
  for (const auto& step : steps) {
    if (step.Holds(limit_ms)) best = std::max(best, step.rate);
  }
  return best;
}

// One echo set-up measured beside the deaths, and its steps.
struct EchoBaseline {
  std::string name;
  fault_bench::EchoShape shape;
  std::vector<fault_bench::CapacityStep> steps;
};

std::string CapacityReport(const std::vector<EchoBaseline>& baselines,
                           const std::vector<fault_bench::CapacityStep>& deaths,
                           const std::string& variant, double limit_ms) {
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

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Runs fault scenarios against integration variants of the hospital services.\n"
      "Usage: fault_bench [--scenarios=all] [--variants=naive,retries,resilient] [--out=DIR]");
  absl::ParseCommandLine(argc, argv);
  const double time_scale = absl::GetFlag(FLAGS_time_scale);
  std::vector<fault_bench::Scenario> scenarios;
  const std::string wanted = absl::GetFlag(FLAGS_scenarios);
  for (fault_bench::Scenario& scenario :
       fault_bench::Scenarios(absl::GetFlag(FLAGS_rate_scale), time_scale)) {
    const std::vector<std::string> names = absl::StrSplit(wanted, ',');
    if (wanted == "all" || std::find(names.begin(), names.end(), scenario.name) != names.end()) {
      scenarios.push_back(std::move(scenario));
    }
  }
  if (scenarios.empty() && wanted != "none") {
    std::fprintf(stderr, "--scenarios: no scenario named %s\n", wanted.c_str());
    return 2;
  }
  std::vector<fault_bench::Variant> variants;
  const std::vector<std::string> variant_names = absl::StrSplit(absl::GetFlag(FLAGS_variants), ',');
  for (const std::string& name : variant_names) {
    variants.push_back({name, absl::StrCat(absl::GetFlag(FLAGS_policy_dir), "/", name, ".json")});
    if (!std::ifstream(variants.back().policy_file)) {
      std::fprintf(stderr, "--variants: no policy file %s\n", variants.back().policy_file.c_str());
      return 2;
    }
  }
  const std::string out = absl::GetFlag(FLAGS_out);
  std::filesystem::create_directories(out);

  fault_bench::RunOptions options;
  options.binary_dir = absl::GetFlag(FLAGS_binary_dir);
  options.work_dir = out + "/work";
  options.service_flags = absl::GetFlag(FLAGS_service_flags);
  std::vector<RunResult> runs;
  const absl::Time began = absl::Now();
  const int total = static_cast<int>(scenarios.size() * variants.size());
  int index = 0;
  for (const fault_bench::Scenario& scenario : scenarios) {
    for (const fault_bench::Variant& variant : variants) {
      ++index;
      int shown = -1;
      options.progress = [&](double done) {
        done = std::clamp(done, 0.0, 1.0);
        if (static_cast<int>(done * 100) == shown) return;
        shown = static_cast<int>(done * 100);
        const int width = 30;
        const int filled = static_cast<int>(done * width);
        std::fprintf(stderr, "\r[%d/%d] %-22s %-10s [%s%s] %3.0f%%", index, total,
                     scenario.name.c_str(), variant.name.c_str(), std::string(filled, '#').c_str(),
                     std::string(width - filled, '.').c_str(), done * 100);
      };
      absl::StatusOr<RunResult> run = fault_bench::RunScenario(scenario, variant, options);
      std::fprintf(stderr, "\n");
      if (!run.ok()) {
        std::fprintf(stderr, "%s/%s failed: %s\n", scenario.name.c_str(), variant.name.c_str(),
                     run.status().ToString().c_str());
        return 1;
      }
      runs.push_back(*std::move(run));
    }
  }
  std::string capacity_report;
  if (absl::GetFlag(FLAGS_capacity)) {
    const double limit = absl::GetFlag(FLAGS_p99_limit_ms);
    const fault_bench::Variant variant{
        absl::GetFlag(FLAGS_capacity_variant),
        absl::StrCat(absl::GetFlag(FLAGS_policy_dir), "/", absl::GetFlag(FLAGS_capacity_variant),
                     ".json")};
    options.progress = nullptr;
    std::vector<EchoBaseline> baselines = {
        {"one-hop echo, callback server", {"callback", 0}, {}},
        {"one-hop echo, synchronous server", {"sync", 0}, {}},
        {"fan-out echo (1 + 2 RPCs), callback servers", {"callback", 2}, {}}};
    for (EchoBaseline& baseline : baselines) {
      std::fprintf(stderr, "capacity: %s...\n", baseline.name.c_str());
      absl::StatusOr<std::vector<fault_bench::CapacityStep>> steps =
          SearchCapacity(1000, 256000, limit, [&](double rate) {
            return fault_bench::EchoStep(options, absl::GetFlag(FLAGS_echo_binary), baseline.shape,
                                         rate, absl::Seconds(2));
          });
      if (!steps.ok()) {
        std::fprintf(stderr, "capacity run failed: %s\n", steps.status().ToString().c_str());
        return 1;
      }
      baseline.steps = *std::move(steps);
    }
    std::fprintf(stderr, "capacity: RecordDeath...\n");
    absl::StatusOr<std::vector<fault_bench::CapacityStep>> deaths =
        SearchCapacity(25, 12800, limit, [&](double rate) {
          return fault_bench::DeathStep(options, variant, rate, absl::Seconds(3));
        });
    if (!deaths.ok()) {
      std::fprintf(stderr, "capacity run failed: %s\n", deaths.status().ToString().c_str());
      return 1;
    }
    capacity_report = CapacityReport(baselines, *deaths, variant.name, limit);
  }
  std::filesystem::remove_all(out + "/work");

  std::ofstream json(out + "/results.json");
  json << "[\n";
  for (std::size_t i = 0; i < runs.size(); ++i) {
    json << Json(runs[i]) << (i + 1 < runs.size() ? ",\n" : "\n");
  }
  json << "]\n";
  bool charts = true;
  for (const fault_bench::Scenario& scenario : scenarios) {
    if (absl::Status drawn = fault_bench::DrawScenario(scenario, runs, out); !drawn.ok()) {
      std::fprintf(stderr, "no charts: %s\n", drawn.ToString().c_str());
      charts = false;
      break;
    }
  }
  std::ofstream(out + "/report.md") << Report(scenarios, runs, absl::GetFlag(FLAGS_machine),
                                              absl::Now() - began, charts, capacity_report);
  int violations = 0;
  for (const RunResult& run : runs) {
    violations += run.consistency.violations + (run.consistency.incomplete ? 1 : 0);
  }
  std::fprintf(stderr, "report: %s/report.md; consistency violations: %d\n", out.c_str(),
               violations);
  return violations == 0 ? 0 : 3;
}
