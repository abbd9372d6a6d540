// Charts of a scenario's runs, drawn by gnuplot (Debian package gnuplot-nox): latency
// percentiles, error rate and breaker state over time, one line per variant, fault windows
// shaded.
#ifndef HOSPITAL_BENCH_FAULT_BENCH_CHARTS_H_
#define HOSPITAL_BENCH_FAULT_BENCH_CHARTS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "fault_bench/run.h"
#include "fault_bench/scenario.h"

namespace fault_bench {

// Writes <out>/data/<scenario>-<variant>.tsv and renders <out>/<scenario>.png. Returns
// UNAVAILABLE (and draws nothing) when gnuplot is not installed.
absl::Status DrawScenario(const Scenario& scenario, const std::vector<RunResult>& runs,
                          const std::string& out);

}  // namespace fault_bench

#endif  // HOSPITAL_BENCH_FAULT_BENCH_CHARTS_H_
