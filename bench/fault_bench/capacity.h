// The capacity run: the highest RecordDeath rate the healthy system holds (every call OK, p99
// under a limit), beside the same search for echo servers with no storage, as baselines.
#ifndef HOSPITAL_BENCH_FAULT_BENCH_CAPACITY_H_
#define HOSPITAL_BENCH_FAULT_BENCH_CAPACITY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fault_bench/capacity_steps.h"
#include "fault_bench/run.h"
#include "fault_bench/variant.h"

namespace fault_bench {

// Runs every search (RecordDeath for each of `variants`, the echo baselines) and, for an
// asynchronous variant among them, the relay's drain rate; returns the report's capacity
// section.
// `options.progress` is unused.
// With `repeats` above 1 the RecordDeath searches run that many times, the variants' order
// reversed every other time (A B, B A, A B, ...), and the report gives each variant's capacity
// in every repeat, their medians and the ratio of the medians: one search decides on single 3 s
// steps, which a shared machine's noise can tip either way.
absl::StatusOr<std::string> RunCapacity(const RunOptions& options,
                                        const std::vector<Variant>& variants,
                                        const std::string& echo_binary, double p99_limit_ms,
                                        int repeats = 1);

}  // namespace fault_bench

#endif  // HOSPITAL_BENCH_FAULT_BENCH_CAPACITY_H_
