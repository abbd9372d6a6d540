// Capacity steps: an open-loop load at one fixed rate, against echo servers (the RPC floor) or
// the services on a variant (RecordDeath), and how fast the outbox relay drains a backlog.
// capacity.h searches for the highest rate that holds with them.
#ifndef HOSPITAL_BENCH_FAULT_BENCH_CAPACITY_STEPS_H_
#define HOSPITAL_BENCH_FAULT_BENCH_CAPACITY_STEPS_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "fault_bench/run.h"
#include "fault_bench/variant.h"

namespace fault_bench {

// One step of a capacity search: an open-loop load at a fixed rate.
struct CapacityStep {
  double rate = 0;  // Calls per second offered.
  int calls = 0;
  int ok = 0;
  double p99_ms = 0;
  // The largest peak resident set among the processes under test, MiB (RecordDeath steps:
  // the three services).
  double peak_rss_mib = 0;
  // The broker's peak resident set, MiB (asynchronous variant; -1 otherwise).
  double broker_rss_mib = -1;
  // After the load's end, until every acknowledged death's effects were visible, seconds
  // (effectively 0 for the synchronous variants; a backlog that grew during the load takes
  // longer to drain). Infinite if some never were.
  double drained_after_s = 0;
  // CPU time over the load window per call, ms: the processes under test (services and broker)
  // and the load generator (with the effect watcher); -1 when not measured (echo steps).
  double cpu_ms_per_call = -1;
  double bench_cpu_ms_per_call = -1;
  // The first, by process under test ("patients", "postgres primary", ...): where it went.
  std::map<std::string, double> cpu_ms_by_process;
  // Units of work run again per call, by service (RunResult::db_retries_per_death).
  std::map<std::string, double> db_retries_per_call;
  bool Holds(double p99_limit_ms) const {
    return ok == calls && calls > 0 && p99_ms < p99_limit_ms && drained_after_s <= 0.5;
  }
};

// The echo server set-up of a capacity baseline.
struct EchoShape {
  std::string api = "callback";  // The front server's gRPC API: callback or sync.
  // 0: one hop. N: the front server forwards each call to N leaf echo servers at once (callback
  // API), so that a call costs 1 + N RPCs, like a RecordDeath without its database work.
  int fan_out = 0;
};

// Offers `rate` echo calls per second for `duration` to fresh echo_server processes set up as
// `shape` says (no storage anywhere).
absl::StatusOr<CapacityStep> EchoStep(const RunOptions& options, const std::string& echo_binary,
                                      const EchoShape& shape, double rate, absl::Duration duration);

// Offers `rate` RecordDeath calls per second for `duration` to fresh services on `variant`.
absl::StatusOr<CapacityStep> DeathStep(const RunOptions& options, const Variant& variant,
                                       double rate, absl::Duration duration);

// How fast the outbox relay drains a backlog: `events` PatientDied events are written into the
// patients service's outbox while the broker is down (the consumers are stopped, so only the
// relay and the broker work), then the broker is started.
struct RelayDrain {
  int events = 0;
  double seconds_to_first = 0;   // From the broker's start until the first event left.
  double seconds_to_empty = 0;   // From the first event's departure until the outbox was empty.
  double events_per_second = 0;  // events / seconds_to_empty
  double broker_rss_mib = 0;
};
absl::StatusOr<RelayDrain> MeasureRelayDrain(const RunOptions& options, const Variant& variant,
                                             int events);

}  // namespace fault_bench

#endif  // HOSPITAL_BENCH_FAULT_BENCH_CAPACITY_STEPS_H_
