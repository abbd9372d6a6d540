// What fault_bench writes: report.md (per scenario, a side-by-side table of every variant and
// the findings paragraph) and results.json (fault_bench.v1.RunResults, protos/fault_bench).
#ifndef HOSPITAL_BENCH_FAULT_BENCH_REPORT_H_
#define HOSPITAL_BENCH_FAULT_BENCH_REPORT_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "fault_bench/run.h"
#include "fault_bench/scenario.h"
#include "fault_bench/v1/results.pb.h"

namespace fault_bench {

struct ReportContext {
  std::string machine;     // As the user described it; "" for not stated.
  absl::Duration elapsed;  // The whole suite.
  bool charts = false;     // Whether <scenario>.png was drawn beside the report.
  std::string capacity;    // The capacity section (capacity.h), or "".
};

std::string Report(const std::vector<Scenario>& scenarios, const std::vector<RunResult>& runs,
                   const ReportContext& context);

// The figures and samples of every run, for results.json.
v1::RunResults ResultsOf(const std::vector<RunResult>& runs);

}  // namespace fault_bench

#endif  // HOSPITAL_BENCH_FAULT_BENCH_REPORT_H_
