// Figures of one run, as the report shows them.
#ifndef HOSPITAL_BENCH_FAULT_BENCH_SUMMARY_H_
#define HOSPITAL_BENCH_FAULT_BENCH_SUMMARY_H_

#include <vector>

#include "absl/time/time.h"
#include "fault_bench/run.h"

namespace fault_bench {

struct Summary {
  int calls = 0;
  int ok = 0;
  double success_percent = 0;
  double throughput = 0;                                // Successful calls per second.
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;  // Milliseconds.
  double failed_p99 = 0;                                // Milliseconds, failed calls only.
};

Summary Summarise(const std::vector<CallSample>& samples, absl::Duration duration);

// p99 latency (ms) of the RecordDeath calls that failed while the morgue's breaker was OPEN or
// FORCED_OPEN at their intended send time (by the latest breaker sample before it); -1 when
// there were none. This is the fail-fast figure: calls the breaker turned away, and the
// half-open probes among them.
double FailedWhileOpenP99(const RunResult& run);

// p99 latency (ms) and number of the RecordDeath calls refused at once because a downstream's
// breaker was open; p99 -1 when there were none.
struct BreakerRejections {
  int calls = 0;
  double p99 = -1;
};
BreakerRejections RejectedByBreaker(const RunResult& run);

// Seconds any breaker spent open.
double BreakerOpenSeconds(const RunResult& run);

// The largest peak resident set of the three services, in MiB.
double PeakResidentMiB(const RunResult& run);

}  // namespace fault_bench

#endif  // HOSPITAL_BENCH_FAULT_BENCH_SUMMARY_H_
