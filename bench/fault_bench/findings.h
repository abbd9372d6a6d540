// The paragraph under each scenario's table: what the scenario claims, the figures of this run
// that bear on the claim, and whether they support it. Every number comes from the runs.
#ifndef HOSPITAL_BENCH_FAULT_BENCH_FINDINGS_H_
#define HOSPITAL_BENCH_FAULT_BENCH_FINDINGS_H_

#include <string>
#include <vector>

#include "fault_bench/run.h"
#include "fault_bench/scenario.h"

namespace fault_bench {

// `runs` are the scenario's runs, one per variant. Variants other than naive, retries and
// resilient are listed with their figures but not judged.
std::string Findings(const Scenario& scenario, const std::vector<const RunResult*>& runs);

}  // namespace fault_bench

#endif  // HOSPITAL_BENCH_FAULT_BENCH_FINDINGS_H_
