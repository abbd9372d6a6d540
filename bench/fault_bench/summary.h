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

// The largest peak resident set of the three services, in MiB (the broker is reported apart).
double PeakResidentMiB(const RunResult& run);
// The broker's peak resident set, MiB; -1 without one.
double BrokerResidentMiB(const RunResult& run);

// From acknowledgement to both effects visible, ms, over the acknowledged deaths whose effects
// were seen.
struct EffectDelays {
  int seen = 0;
  double p50 = 0, p99 = 0, max = 0;
};
EffectDelays EffectDelaysOf(const RunResult& run);

// RecordDeath p99 (ms) of the calls sent during a fault window, and of those sent outside
// every window and more than a second after one ended (the healthy part of the same run);
// -1 when there are none.
struct FaultLatency {
  double during_p99 = -1;
  double healthy_p99 = -1;
};
FaultLatency FaultLatencyOf(const RunResult& run);

// How long after the last fault ended every death acknowledged before that moment had both
// effects visible, seconds: 0 if they already had, -1 if some never did.
double BacklogDrainedAfter(const RunResult& run);
// p99 over the deaths acknowledged during a fault window of the time from the window's end to
// their effects being visible (0 for one visible before the end), ms; -1 when there are none.
double AppliedAfterFaultP99(const RunResult& run);
// Seconds from the last fault's end to the answer of the first RecordDeath sent after it that
// succeeded (how soon writes were accepted again); 0 without faults, -1 if none succeeded.
double WritesBackAfter(const RunResult& run);
// RecordDeath calls that ended DEADLINE_EXCEEDED: cut by their deadline rather than answered.
int DeadlineExceeded(const RunResult& run);

}  // namespace fault_bench

#endif  // HOSPITAL_BENCH_FAULT_BENCH_SUMMARY_H_
