// The fault scenarios of the benchmark: a load (deaths and background reads per second, for a
// duration), a timeline of faults applied while it runs (through the FaultInjection admin service
// or to the processes themselves: SIGSTOP/SIGCONT, kill -9 and restart), the claim the scenario
// tests and the judgement that settles it. Adding a scenario is one entry in Scenarios()
// (scenario.cc).
#ifndef HOSPITAL_BENCH_FAULT_BENCH_SCENARIO_H_
#define HOSPITAL_BENCH_FAULT_BENCH_SCENARIO_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "fault_bench/variant.h"

namespace fault_bench {

// kBroker: the nats-server of the asynchronous variant; kSyncJob: the batch_sync process of
// the shared-database variant (steps on either do nothing to the variants without one);
// kDatabase: the PostgreSQL primary of a variant on Storage::kPostgres (kKill) and its
// standby (kPromote); a scenario with steps on it runs on those variants only.
enum class Service { kPatients, kMorgue, kAppointments, kBroker, kSyncJob, kDatabase };
const char* ServiceName(Service service);

struct Step {
  // kLockDatabase: the service's database write-locked (BEGIN IMMEDIATE held by another
  // connection, as a long migration or a stuck transaction would), until kUnlockDatabase.
  // kPromote (kDatabase only): the synchronous standby promoted to primary, as the operator
  // does once the primary is lost; it ends the fault.
  enum class Kind {
    kSetFault,
    kClearFaults,
    kFreeze,
    kUnfreeze,
    kKill,
    kRestart,
    kLockDatabase,
    kUnlockDatabase,
    kPromote
  };
  absl::Duration at;
  Kind kind;
  Service service;
  // For kSetFault: a hospital.faults.v1.Fault in protobuf's JSON form.
  std::string fault_json;
};

class FigureSet;  // findings.h

// A scenario's verdict on its claim: the figures that settle it, in a sentence or two, and
// whether they support it.
struct Judgement {
  std::string figures;
  bool holds = false;
};

struct Scenario {
  std::string name;
  // One sentence: what the scenario shows.
  std::string claim;
  absl::Duration duration;
  double deaths_per_second;
  double reads_per_second;
  std::vector<Step> timeline;
  // The variants whose figures settle the claim; it is not judged unless all of them ran.
  std::vector<std::string> judged_on = {};
  // Reads the figures that bear on the claim; empty for a scenario that only reports.
  std::function<Judgement(const FigureSet&)> judge = {};
  // The people using the system meanwhile (fault_bench's ActAsUsers): releases, own
  // cancellations and bookings, in turn, on patients whose deaths were just sent.
  double user_actions_per_second = 6;  // Last: the table in scenario.cc leaves it out.
  // The variants that run it: when empty, every selected variant but the opt-in ones
  // (Variant::opt_in); else exactly those named here (if selected), on either storage engine
  // (Variant::BaseName). Set after the table.
  std::vector<std::string> runs_on = {};
  // The same fault as it reaches the variants that write the other services' databases
  // (Variant::WritesOtherDatabases), whose deaths never pass through the morgue's or the
  // appointments service's RPCs or event handling: for an outage, their database locked.
  // Without one, those variants do not run a scenario that injects faults into those services.
  std::optional<std::vector<Step>> database_timeline = {};  // Set after the table.
  // Flags the morgue starts with in this scenario, beside the variant's (its thread bound, say).
  std::vector<std::string> morgue_flags = {};  // Set after the table.
  // RecordDeath calls sent at once before the load (RunOptions::warmup_deaths when negative):
  // fewer for a morgue whose thread bound would refuse most of a larger burst.
  int warmup_deaths = -1;  // Set after the table.

  // Whether a step acts on the PostgreSQL servers (Service::kDatabase).
  bool NeedsPostgres() const;
  // Whether `variant` runs this scenario.
  bool RunsOn(const Variant& variant) const;
  // The steps applied to `variant`: the database timeline, if it has one and the variant
  // writes the other services' databases; else the timeline.
  const std::vector<Step>& TimelineFor(const Variant& variant) const;
  // When the last fault ends (zero when there is none).
  absl::Duration FaultsEnd() const;
  // The windows during which a fault is in force, for shading charts.
  std::vector<std::pair<absl::Duration, absl::Duration>> FaultWindows() const;
};

// Every scenario, with its load scaled by `rate_scale` and its timeline by `time_scale`.
std::vector<Scenario> Scenarios(double rate_scale, double time_scale);

}  // namespace fault_bench

#endif  // HOSPITAL_BENCH_FAULT_BENCH_SCENARIO_H_
