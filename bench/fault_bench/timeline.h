// A scenario's fault timeline applied to the processes of a run: each Step (scenario.h) becomes
// a signal to a process (freeze, kill, restart), a database lock, a fault rule set through the
// service's FaultInjection admin API, or an action on the broker.
#ifndef HOSPITAL_BENCH_FAULT_BENCH_TIMELINE_H_
#define HOSPITAL_BENCH_FAULT_BENCH_TIMELINE_H_

#include "absl/status/status.h"
#include "fault_bench/scenario.h"
#include "fault_bench/system.h"

namespace fault_bench {

// Applies `step` now. A step on what the variant does not run (the broker, the batch job) does
// nothing; one the target cannot take is INVALID_ARGUMENT.
absl::Status ApplyStep(System& system, const Step& step);

}  // namespace fault_bench

#endif  // HOSPITAL_BENCH_FAULT_BENCH_TIMELINE_H_
