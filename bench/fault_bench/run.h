// One run of the benchmark: a scenario against one integration variant, on fresh services.
#ifndef HOSPITAL_BENCH_FAULT_BENCH_RUN_H_
#define HOSPITAL_BENCH_FAULT_BENCH_RUN_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <grpcpp/support/status.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "fault_bench/consistency.h"
#include "fault_bench/scenario.h"
#include "fault_bench/variant.h"

namespace fault_bench {

struct RunOptions {
  std::string binary_dir;  // Holds patients, morgue, appointments, batch_sync.
  std::string work_dir;    // Fresh databases and logs go below it.
  // Extra flags for all three services, e.g. --sqlite_synchronous=NORMAL.
  std::vector<std::string> service_flags;
  int appointments_per_patient = 3;
  // Asynchronous variant: lines added inside nats-server's jetstream block (e.g.
  // "sync_interval: always").
  std::string broker_config;
  // RecordDeath calls sent all at once before the load, on patients of their own, so that the
  // measured load does not include the first calls' cold start (connections, server threads).
  int warmup_deaths = 24;
  absl::Duration client_deadline = absl::Seconds(10);
  // Called now and then with the share of the run done, for a progress bar.
  std::function<void(double)> progress;
};

// One call, timed from when it was meant to be sent (open loop: a stalled system cannot hide
// its delay by slowing the sender down).
struct CallSample {
  absl::Duration intended_offset;  // From the start of the load.
  absl::Duration latency;
  grpc::StatusCode code;
  // RecordDeath only: refused before any work because a downstream's breaker was open (the
  // patients service's x-hospital-error-reason trailer says CIRCUIT_OPEN).
  bool rejected_by_breaker = false;
};

struct BreakerSample {
  absl::Duration offset;
  std::string target;
  std::string state;
};

struct RunResult {
  std::string scenario;
  std::string variant;
  absl::Duration duration;
  std::vector<CallSample> deaths;
  std::vector<CallSample> reads;              // Background GetPatient calls.
  std::vector<CallSample> appointment_reads;  // Background ListAppointments calls.
  std::vector<BreakerSample> breakers;
  // Attempts the patients service sent to each downstream's forward method, per RecordDeath.
  double morgue_attempts_per_death = 0;
  double appointments_attempts_per_death = 0;
  // Seconds each breaker spent OPEN or FORCED_OPEN.
  std::map<std::string, double> breaker_open_seconds;
  // The patients service's owed undo calls (hospital_death_compensations_pending), sampled
  // with the breakers: offset from the load's start, count.
  std::vector<std::pair<absl::Duration, double>> pending_compensations;
  Consistency consistency;
  // From the end of the last fault (the end of the load when the scenario has none) until the
  // services agree: until the owed undo calls were drained for good, or, if the check after the
  // load still found disagreement, until the first check that found none. Negative if they did
  // not agree within 60 s.
  absl::Duration time_to_consistency = absl::ZeroDuration();
  std::map<std::string, long> peak_resident_bytes;

  // Per acknowledged death of the load: when it was acknowledged and when a poll first found
  // both effects (the admission, and no scheduled appointment), from the load's start; visible
  // is negative if they were never seen before the consistency wait ended.
  // The scenario's fault windows (from, to), from the load's start.
  std::vector<std::pair<absl::Duration, absl::Duration>> fault_windows;
  struct EffectTimes {
    absl::Duration acknowledged;
    absl::Duration visible;
  };
  std::vector<EffectTimes> effects;
  // The largest outbox plus consumer backlog sampled (asynchronous variant; 0 otherwise):
  // the patients service's unpublished events plus the larger of the two consumers' pending.
  double peak_backlog = 0;
  // Deliveries of a death to a downstream beyond the first: RPC repeats that the morgue and
  // appointments service answered as already applied (synchronous), or events the consumers
  // recognised as processed (asynchronous).
  double duplicate_deliveries = 0;
  // Effects applied more than once (asynchronous: events a consumer applied beyond one per
  // death); -1 when not measured (synchronous: a repeat carries the workflow id that makes it
  // idempotent and is counted above).
  double duplicate_effects = -1;
  // Calls each service ("patients", "morgue", "appointments") refused for lack of serving
  // threads on its public listener during the run (hospital_rpc_refusals_total, reason
  // threads_exhausted): answered RESOURCE_EXHAUSTED with the server's pushback, which the
  // resilient policies retry.
  std::map<std::string, double> busy_refusals;
  // CPU time per death of the load, ms, per process ("patients", "morgue", "appointments",
  // "nats-server", "bench": the load generator and the effect watcher), from /proc over the
  // load window; a process restarted during the load is left out.
  std::map<std::string, double> cpu_ms_per_death;
  // Per death of the load, per service: units of work its storage ran again after a
  // serialization failure or deadlock (hospital_db_transaction_retries_total; PostgreSQL
  // only, SQLite's single writer has none), from the warm-up's end until the services agreed.
  std::map<std::string, double> db_retries_per_death;
  // The people's actions during the load: how many the services acknowledged and refused.
  struct ActionCounts {
    int acknowledged = 0;
    int refused = 0;
  };
  ActionCounts releases;
  ActionCounts own_cancellations;
  ActionCounts bookings;
};

// The effects of the acknowledged deaths that were never seen.
int LostDeaths(const RunResult& run);

// The value below which `quantile` (0 to 1) of `values` fall (nearest rank); 0 when empty.
double Quantile(std::vector<double> values, double quantile);

absl::StatusOr<RunResult> RunScenario(const Scenario& scenario, const Variant& variant,
                                      const RunOptions& options);

}  // namespace fault_bench

#endif  // HOSPITAL_BENCH_FAULT_BENCH_RUN_H_
