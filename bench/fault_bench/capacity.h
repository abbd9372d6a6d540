// The capacity run: the highest RecordDeath rate the healthy system holds (every call OK, p99
// under a limit), beside the same search for echo servers with no storage, as baselines.
#ifndef HOSPITAL_BENCH_FAULT_BENCH_CAPACITY_H_
#define HOSPITAL_BENCH_FAULT_BENCH_CAPACITY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fault_bench/run.h"
#include "fault_bench/variant.h"

namespace fault_bench {

// Runs every search (RecordDeath for each of `variants`, the echo baselines) and, for an
// asynchronous variant among them, the relay's drain rate; returns the report's capacity
// section.
// `options.progress` is unused.
absl::StatusOr<std::string> RunCapacity(const RunOptions& options,
                                        const std::vector<Variant>& variants,
                                        const std::string& echo_binary, double p99_limit_ms);

}  // namespace fault_bench

#endif  // HOSPITAL_BENCH_FAULT_BENCH_CAPACITY_H_
