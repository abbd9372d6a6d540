// fault_bench: runs fault scenarios against integration variants of the hospital and reports
// latency, availability, amplification and consistency side by side.
//
//   fault_bench --out=bench/report                      # every scenario x every variant
//   fault_bench --scenarios=morgue_down --variants=naive,resilient --out=/tmp/report
//   fault_bench --storage=postgres --scenarios=db_primary_killed --variants=resilient,async
//
// Each run starts fresh copies of the three services (separate processes, fresh databases),
// seeds patients with appointments, drives an open-loop load of RecordDeath plus background
// GetPatient and ListAppointments reads, applies the scenario's fault timeline, then checks that
// the services agree.
// Output: report.md (side-by-side table and a paragraph per claim) and results.json (raw data).
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "fault_bench/capacity.h"
#include "fault_bench/charts.h"
#include "fault_bench/report.h"
#include "fault_bench/run.h"
#include "fault_bench/scenario.h"
#include "fault_bench/variant.h"

ABSL_FLAG(std::string, scenarios, "all", "Comma-separated scenario names, or all");
ABSL_FLAG(std::string, variants,
          "naive,retries,resilient,async,shared_db_batch,direct_db_write,file_drop,hedged,"
          "throttled",
          "Comma-separated variants (bench/fault_bench/variant.cc lists them)");
ABSL_FLAG(std::string, out, "fault-report", "Directory for report.md and results.json");
ABSL_FLAG(std::string, binary_dir, HOSPITAL_BINARY_DIR "/bin", "Where the service binaries are");
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
ABSL_FLAG(std::string, capacity_variant, "resilient,async",
          "Variants of the capacity run, comma-separated");
ABSL_FLAG(int, capacity_repeats, 1,
          "Times each RecordDeath capacity search runs, the variants' order reversed every "
          "other time; above 1 the report adds the medians and their ratio");
ABSL_FLAG(std::string, storage, "sqlite",
          "Where the services keep their data: sqlite, postgres (a primary and a synchronous "
          "standby of the run's own; variants renamed with +pg, the shared-disk patterns left "
          "out), or sqlite,postgres for both side by side. Applies to --capacity_variant too");
ABSL_FLAG(std::string, echo_binary, HOSPITAL_BINARY_DIR "/bin/echo_server",
          "The echo server of the capacity baseline");

namespace {

using fault_bench::RunResult;
using fault_bench::Scenario;
using fault_bench::Variant;

// The scenarios named in `wanted` (comma-separated, "all" or "none").
absl::StatusOr<std::vector<Scenario>> SelectScenarios(const std::string& wanted) {
  std::vector<Scenario> scenarios;
  const std::vector<std::string> names = absl::StrSplit(wanted, ',');
  for (Scenario& scenario :
       fault_bench::Scenarios(absl::GetFlag(FLAGS_rate_scale), absl::GetFlag(FLAGS_time_scale))) {
    if (wanted == "all" || std::find(names.begin(), names.end(), scenario.name) != names.end()) {
      scenarios.push_back(std::move(scenario));
    }
  }
  if (scenarios.empty() && wanted != "none") {
    return absl::InvalidArgumentError("--scenarios: no scenario named " + wanted);
  }
  return scenarios;
}

// A progress bar on stderr for run `index` of `total`.
std::function<void(double)> ProgressBar(int index, int total, const Scenario& scenario,
                                        const Variant& variant) {
  return [index, total, name = scenario.name, variant = variant.name,
          shown = -1](double done) mutable {
    done = std::clamp(done, 0.0, 1.0);
    if (static_cast<int>(done * 100) == shown) return;
    shown = static_cast<int>(done * 100);
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(done * kWidth);
    std::fprintf(stderr, "\r[%d/%d] %-22s %-10s [%s%s] %3.0f%%", index, total, name.c_str(),
                 variant.c_str(), std::string(filled, '#').c_str(),
                 std::string(kWidth - filled, '.').c_str(), done * 100);
  };
}

// Keeps the working directory of a run whose services ended disagreeing (their databases,
// logs and the broker's store) under `out`/kept, and says what the checker found; removes the
// others.
void KeepEvidence(const std::string& out, const fault_bench::RunOptions& options,
                  const Scenario& scenario, const Variant& variant, const RunResult& run) {
  const std::string name = scenario.name + "-" + variant.name;
  const std::string dir = options.work_dir + "/" + name;
  if (run.consistency.violations == 0 && !run.consistency.incomplete) {
    std::filesystem::remove_all(dir);
    return;
  }
  const std::string kept = out + "/kept/" + name;
  std::filesystem::remove_all(kept);
  std::filesystem::create_directories(out + "/kept");
  std::error_code error;
  std::filesystem::rename(dir, kept, error);
  std::fprintf(
      stderr, "%s/%s: %d consistency violations%s; its databases and logs are in %s\n",
      scenario.name.c_str(), variant.name.c_str(), run.consistency.violations,
      run.consistency.incomplete ? " (incomplete: a service did not answer the check)" : "",
      error ? dir.c_str() : kept.c_str());
  for (const std::string& example : run.consistency.examples) {
    std::fprintf(stderr, "  %s\n", example.c_str());
  }
}

absl::StatusOr<std::vector<RunResult>> RunAll(const std::vector<Scenario>& scenarios,
                                              const std::vector<Variant>& variants,
                                              const std::string& out,
                                              fault_bench::RunOptions options) {
  std::vector<RunResult> runs;
  int total = 0;
  for (const Scenario& scenario : scenarios) {
    for (const Variant& variant : variants) total += scenario.RunsOn(variant);
  }
  for (const Scenario& scenario : scenarios) {
    for (const Variant& variant : variants) {
      if (!scenario.RunsOn(variant)) continue;
      options.progress = ProgressBar(static_cast<int>(runs.size()) + 1, total, scenario, variant);
      absl::StatusOr<RunResult> run = fault_bench::RunScenario(scenario, variant, options);
      std::fprintf(stderr, "\n");
      if (!run.ok()) {
        return absl::Status(run.status().code(), scenario.name + "/" + variant.name + ": " +
                                                     std::string(run.status().message()));
      }
      KeepEvidence(out, options, scenario, variant, *run);
      runs.push_back(*std::move(run));
    }
  }
  return runs;
}

absl::Status WriteOutputs(const std::string& out, const std::vector<Scenario>& scenarios,
                          const std::vector<RunResult>& runs, fault_bench::ReportContext context) {
  std::string json;
  google::protobuf::util::JsonPrintOptions print;
  print.add_whitespace = true;
  print.preserve_proto_field_names = true;
  print.always_print_primitive_fields = true;
  if (const auto printed =
          google::protobuf::util::MessageToJsonString(fault_bench::ResultsOf(runs), &json, print);
      !printed.ok()) {
    return absl::InternalError("results.json: " + printed.ToString());
  }
  std::ofstream(out + "/results.json") << json;
  context.charts = true;
  for (const Scenario& scenario : scenarios) {
    if (absl::Status drawn = fault_bench::DrawScenario(scenario, runs, out); !drawn.ok()) {
      std::fprintf(stderr, "no charts: %s\n", drawn.ToString().c_str());
      context.charts = false;
      break;
    }
  }
  std::ofstream(out + "/report.md") << fault_bench::Report(scenarios, runs, context);
  return absl::OkStatus();
}

// The variants named in `names` on every engine of --storage; says which stay on SQLite.
absl::StatusOr<std::vector<Variant>> SelectOnStorage(const std::string& names,
                                                     const std::string& policy_dir) {
  const absl::StatusOr<std::vector<Variant>> selected =
      fault_bench::SelectVariants(names, policy_dir);
  if (!selected.ok()) return selected.status();
  std::vector<std::string> left_out;
  absl::StatusOr<std::vector<Variant>> on_storage =
      fault_bench::OnStorage(*selected, absl::GetFlag(FLAGS_storage), left_out);
  if (on_storage.ok() && !left_out.empty()) {
    std::fprintf(stderr, "not on postgres (the shared-disk patterns stay on SQLite): %s\n",
                 absl::StrJoin(left_out, ", ").c_str());
  }
  return on_storage;
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "%s\n", status.ToString().c_str());
  return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Runs fault scenarios against integration variants of the hospital services.\n"
      "Usage: fault_bench [--scenarios=all] "
      "[--variants=naive,retries,resilient,async,shared_db_batch,direct_db_write,file_drop,"
      "hedged,throttled] "
      "[--storage=sqlite|postgres|sqlite,postgres] [--out=DIR] [--capacity]");
  absl::ParseCommandLine(argc, argv);
  const absl::StatusOr<std::vector<Scenario>> scenarios =
      SelectScenarios(absl::GetFlag(FLAGS_scenarios));
  if (!scenarios.ok()) return Fail(scenarios.status());
  const std::string policy_dir = absl::GetFlag(FLAGS_policy_dir);
  const absl::StatusOr<std::vector<Variant>> variants =
      SelectOnStorage(absl::GetFlag(FLAGS_variants), policy_dir);
  if (!variants.ok()) return Fail(variants.status());
  const std::string out = absl::GetFlag(FLAGS_out);
  std::filesystem::create_directories(out);

  fault_bench::RunOptions options;
  options.binary_dir = absl::GetFlag(FLAGS_binary_dir);
  options.work_dir = out + "/work";
  options.service_flags = absl::GetFlag(FLAGS_service_flags);
  const absl::Time began = absl::Now();
  const absl::StatusOr<std::vector<RunResult>> runs = RunAll(*scenarios, *variants, out, options);
  if (!runs.ok()) return Fail(runs.status());
  fault_bench::ReportContext context;
  context.machine = absl::GetFlag(FLAGS_machine);
  if (absl::GetFlag(FLAGS_capacity)) {
    const absl::StatusOr<std::vector<Variant>> capacity_variant =
        SelectOnStorage(absl::GetFlag(FLAGS_capacity_variant), policy_dir);
    if (!capacity_variant.ok()) return Fail(capacity_variant.status());
    absl::StatusOr<std::string> capacity = fault_bench::RunCapacity(
        options, *capacity_variant, absl::GetFlag(FLAGS_echo_binary),
        absl::GetFlag(FLAGS_p99_limit_ms), std::max(1, absl::GetFlag(FLAGS_capacity_repeats)));
    if (!capacity.ok()) return Fail(capacity.status());
    context.capacity = *std::move(capacity);
  }
  std::filesystem::remove_all(out + "/work");
  context.elapsed = absl::Now() - began;
  if (absl::Status written = WriteOutputs(out, *scenarios, *runs, context); !written.ok()) {
    return Fail(written);
  }
  int violations = 0;
  for (const RunResult& run : *runs) {
    violations += run.consistency.violations + (run.consistency.incomplete ? 1 : 0);
  }
  std::fprintf(stderr, "report: %s/report.md; consistency violations: %d\n", out.c_str(),
               violations);
  return violations == 0 ? 0 : 3;
}
