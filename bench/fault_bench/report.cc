#include "fault_bench/report.h"

#include <algorithm>

#include <fmt/format.h>

#include "absl/strings/str_join.h"
#include "fault_bench/findings.h"
#include "fault_bench/summary.h"

namespace fault_bench {
namespace {

constexpr char kPreamble[] =
    "Latencies are measured from each call's intended send time (open-loop load), so a stalled "
    "system cannot hide its delay. Morgue attempts per death count every attempt or delivery "
    "of a death to the morgue, repeats included, per death of the load, until the services "
    "agreed: AdmitDeceased calls (synchronous variants), events handed to the morgue's "
    "consumer (async, file_drop), deaths the batch job or the direct writes took to the "
    "morgue's database (shared_db_batch, direct_db_write). \"Failed while open\" counts failed "
    "calls "
    "sent while the morgue's breaker was sampled OPEN (every 100 ms), so half-open probes between "
    "samples are among them; \"rejected by breaker\" counts only the calls the patients service "
    "refused because a breaker was open. Time to consistency runs from the end of the last fault "
    "(of the load, if there is none) until the three services agree: until the patients service "
    "owes no more undo calls (sampled every 100 ms), confirmed by a full check after the load, "
    "or until the first full check that passes.\n\n"
    "The second table of each scenario follows each acknowledged death to its effects: a "
    "watcher reads the morgue's and the appointments service's databases directly (read-only, "
    "so that an injected fault or a frozen process does not hide a committed effect): each "
    "millisecond it reads both databases' PRAGMA data_version, and checks a death when it is "
    "acknowledged and again after each commit to the database it still waits on (on "
    "PostgreSQL, which keeps no such counter, it asks about every waiting death every 10 ms, one "
    "query per database, from whichever server takes writes); \"ack to both "
    "effects\" is from the acknowledgement to the first read that found the admission and no "
    "appointment left scheduled. A synchronous death is applied before it is acknowledged, so "
    "its figure is the time of one round of reads. "
    "\"RecordDeath p99 during fault / healthy\" splits the calls by their intended send time: "
    "inside a fault window, or outside every window and over a second after one ended. "
    "\"Backlog drained\" is how long after the last fault every death acknowledged before its "
    "end had both effects visible; \"effects after fault\" is, for the deaths acknowledged during "
    "a fault, the time from its end to their effects. Peak backlog (asynchronous variant) is the "
    "largest sampled sum of the patients service's unpublished outbox events and the larger "
    "consumer's pending events (the consumers refresh theirs every second). Duplicate "
    "deliveries are repeats the downstreams recognised: AdmitDeceased answered as already "
    "admitted and CancelPatientAppointments as replayed (synchronous), or events a consumer (or "
    "the batch writer) had already processed. Duplicate effects are deaths a consumer or the "
    "batch writer applied beyond one per deceased patient (\"-\" for the synchronous variants, "
    "whose repeats carry the idempotency key and are counted as deliveries). Deaths lost are "
    "acknowledged deaths whose effects were never seen "
    "within the 60 s consistency wait. CPU ms per death is each process's user plus system time "
    "over the load window (from /proc) divided by the load's deaths; \"bench\" is the load "
    "generator with the effect watcher; a PostgreSQL server counts its postmaster and every "
    "backend it forked (the watcher's own queries among them); a process restarted (or "
    "killed) during the load is not counted. Variants named +pg keep the three services' data "
    "on PostgreSQL 15 (--storage=postgres): a primary and a synchronous standby of the run's "
    "own, fresh for every run, the services on the two-host URI.\n\n"
    "The three patterns that share a filesystem: shared_db_batch and file_drop move deaths every "
    "second; their duplicate deliveries and effects come from the counters of whoever applies "
    "them (batch_sync's or the patients service's hospital_batch_sync_events_total, the "
    "consumers' hospital_file_drop_events_total), read for a process killed by the timeline "
    "just before the kill and added. The file drop's peak backlog is the outbox's unpublished "
    "events only. The two that write the morgue's and the appointments service's databases "
    "(shared_db_batch, direct_db_write) never go through those services' RPCs or event "
    "handling, so a fault injected there would not touch them: they run such a scenario only "
    "where it says what the fault is for them (morgue_down: the morgue's database write-locked "
    "by another connection, BEGIN IMMEDIATE held for the outage), and skip the others. The "
    "file drop's consumers take injected faults as the broker's do.\n\n";

constexpr char kTableHeader[] =
    "| variant | deaths ok | deaths/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms "
    "| failed p99 ms | failed while open p99 ms | rejected by breaker: calls, p99 ms "
    "| GetPatient p99 ms | ListAppointments p99 ms | morgue attempts/death | breaker open s "
    "| violations | consistent after s | peak RSS MiB "
    "| users' releases, own cancellations, bookings: acknowledged/refused |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
    "| --- | --- | --- | --- | --- |\n";

std::string TableRow(const RunResult& run) {
  const Figures figures = FiguresOf(run);
  const Summary& deaths = figures.deaths;
  return fmt::format(
      "| {} | {}/{} ({:.1f}%) | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.1f} "
      "| {} | {} | {:.1f} | {:.1f} | {:.2f} | {:.1f} | {}{} | {:.1f} | {:.1f} | {} |\n",
      run.variant, deaths.ok, deaths.calls, deaths.success_percent, deaths.throughput, deaths.p50,
      deaths.p90, deaths.p99, deaths.p999, deaths.max, deaths.failed_p99,
      figures.failed_while_open_p99 < 0 ? "-"
                                        : fmt::format("{:.1f}", figures.failed_while_open_p99),
      figures.rejected.calls == 0
          ? "-"
          : fmt::format("{}, {:.1f}", figures.rejected.calls, figures.rejected.p99),
      figures.reads.p99, figures.appointment_reads.p99, figures.attempts_per_death,
      figures.breaker_open_seconds, run.consistency.violations,
      run.consistency.incomplete ? " (incomplete)" : "", figures.consistent_after,
      PeakResidentMiB(run),
      fmt::format("{}/{}, {}/{}, {}/{}", run.releases.acknowledged, run.releases.refused,
                  run.own_cancellations.acknowledged, run.own_cancellations.refused,
                  run.bookings.acknowledged, run.bookings.refused));
}

constexpr char kEffectsHeader[] =
    "| variant | ack to both effects p50 ms | p99 ms | max ms | RecordDeath p99 during fault / "
    "healthy ms | backlog drained after fault s | effects after fault p99 ms | peak backlog "
    "| duplicate deliveries | duplicate effects | deaths lost | busy refusals: patients, morgue, "
    "appointments | nats-server RSS MiB "
    "| CPU ms per death: patients, morgue, appointments, nats-server, batch_sync, postgres "
    "primary, postgres standby, bench |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";

std::string OrDash(double value, const char* format) {
  return value < 0 ? std::string("-") : fmt::format(fmt::runtime(format), value);
}

std::string EffectsRow(const RunResult& run) {
  const Figures figures = FiguresOf(run);
  std::vector<std::string> cpu;
  for (const char* name : {"patients", "morgue", "appointments", "nats-server", "batch_sync",
                           "postgres primary", "postgres standby", "bench"}) {
    const auto found = run.cpu_ms_per_death.find(name);
    cpu.push_back(found == run.cpu_ms_per_death.end() ? "-" : fmt::format("{:.2f}", found->second));
  }
  std::vector<std::string> refusals;
  for (const char* name : {"patients", "morgue", "appointments"}) {
    const auto found = run.busy_refusals.find(name);
    refusals.push_back(found == run.busy_refusals.end() ? "-"
                                                        : fmt::format("{:.0f}", found->second));
  }
  return fmt::format(
      "| {} | {:.1f} | {:.1f} | {:.1f} | {} / {} | {} | {} | {:.0f} | {:.0f} | {} | {} | {} | {} "
      "| {} |\n",
      run.variant, figures.effects.p50, figures.effects.p99, figures.effects.max,
      OrDash(figures.fault_latency.during_p99, "{:.1f}"),
      OrDash(figures.fault_latency.healthy_p99, "{:.1f}"),
      run.fault_windows.empty() ? std::string("-") : OrDash(figures.drained_after, "{:.2f}"),
      OrDash(figures.applied_after_fault_p99, "{:.0f}"), figures.peak_backlog,
      figures.duplicate_deliveries, OrDash(figures.duplicate_effects, "{:.0f}"), figures.lost,
      absl::StrJoin(refusals, ", "), OrDash(BrokerResidentMiB(run), "{:.1f}"),
      absl::StrJoin(cpu, ", "));
}

std::string ScenarioSection(const Scenario& scenario, const std::vector<RunResult>& runs,
                            bool charts) {
  std::vector<std::string> windows;
  for (const auto& [from, to] : scenario.FaultWindows()) {
    windows.push_back(
        fmt::format("{:.1f}-{:.1f} s", absl::ToDoubleSeconds(from), absl::ToDoubleSeconds(to)));
  }
  std::string section = fmt::format(
      "## {}\n\n{}\n\nLoad: {:.0f} deaths/s, {:.0f} reads/s (GetPatient and ListAppointments "
      "in turn) and {:.0f} user actions/s (a release, an own cancellation or a booking, in turn, "
      "on the patient whose death was just sent; for shared_db_batch and file_drop, sent up to "
      "two and a half intervals before) for {:.0f} s. Faults: {}.\n\n{}",
      scenario.name, scenario.claim, scenario.deaths_per_second, scenario.reads_per_second,
      scenario.user_actions_per_second, absl::ToDoubleSeconds(scenario.duration),
      windows.empty() ? "none" : absl::StrJoin(windows, ", "), kTableHeader);
  std::vector<const RunResult*> scenario_runs;
  for (const RunResult& run : runs) {
    if (run.scenario != scenario.name) continue;
    scenario_runs.push_back(&run);
    section += TableRow(run);
  }
  section += std::string("\n") + kEffectsHeader;
  for (const RunResult* run : scenario_runs) section += EffectsRow(*run);
  section += "\n" + Findings(scenario, scenario_runs) + "\n";
  if (charts) section += fmt::format("\n![{0}]({0}.png)\n", scenario.name);
  return section + "\n";
}

v1::CallFigures CallFiguresOf(const Summary& summary) {
  v1::CallFigures figures;
  figures.set_calls(summary.calls);
  figures.set_ok(summary.ok);
  figures.set_throughput(summary.throughput);
  figures.set_p50_ms(summary.p50);
  figures.set_p90_ms(summary.p90);
  figures.set_p99_ms(summary.p99);
  figures.set_p999_ms(summary.p999);
  figures.set_max_ms(summary.max);
  figures.set_failed_p99_ms(summary.failed_p99);
  return figures;
}

v1::RunRecord RecordOf(const RunResult& run) {
  const Figures figures = FiguresOf(run);
  v1::RunRecord record;
  record.set_scenario(run.scenario);
  record.set_variant(run.variant);
  record.set_duration_s(absl::ToDoubleSeconds(run.duration));
  *record.mutable_deaths() = CallFiguresOf(figures.deaths);
  *record.mutable_reads() = CallFiguresOf(figures.reads);
  *record.mutable_appointment_reads() = CallFiguresOf(figures.appointment_reads);
  record.set_failed_while_breaker_open_p99_ms(figures.failed_while_open_p99);
  record.set_rejected_by_breaker(figures.rejected.calls);
  record.set_rejected_by_breaker_p99_ms(figures.rejected.p99);
  record.set_morgue_attempts_per_death(run.morgue_attempts_per_death);
  record.set_appointments_attempts_per_death(run.appointments_attempts_per_death);
  for (const auto& [target, seconds] : run.breaker_open_seconds) {
    (*record.mutable_breaker_open_s())[target] = seconds;
  }
  const auto counts_of = [](const RunResult::ActionCounts& counts) {
    v1::UserActionCounts message;
    message.set_acknowledged(counts.acknowledged);
    message.set_refused(counts.refused);
    return message;
  };
  *record.mutable_releases() = counts_of(run.releases);
  *record.mutable_own_cancellations() = counts_of(run.own_cancellations);
  *record.mutable_bookings() = counts_of(run.bookings);
  record.set_violations(run.consistency.violations);
  record.set_consistency_incomplete(run.consistency.incomplete);
  record.set_time_to_consistency_s(absl::ToDoubleSeconds(run.time_to_consistency));
  record.set_effect_p50_ms(figures.effects.p50);
  record.set_effect_p99_ms(figures.effects.p99);
  record.set_effect_max_ms(figures.effects.max);
  record.set_deaths_during_fault_p99_ms(figures.fault_latency.during_p99);
  record.set_deaths_healthy_p99_ms(figures.fault_latency.healthy_p99);
  record.set_backlog_drained_after_s(figures.drained_after);
  record.set_applied_after_fault_p99_ms(figures.applied_after_fault_p99);
  record.set_peak_backlog(figures.peak_backlog);
  record.set_duplicate_deliveries(figures.duplicate_deliveries);
  record.set_duplicate_effects(figures.duplicate_effects);
  record.set_deaths_lost(figures.lost);
  for (const auto& [service, calls] : run.busy_refusals) {
    (*record.mutable_busy_refusals())[service] = calls;
  }
  for (const auto& [name, ms] : run.cpu_ms_per_death)
    (*record.mutable_cpu_ms_per_death())[name] = ms;
  for (const auto& [service, bytes] : run.peak_resident_bytes) {
    (*record.mutable_peak_rss_bytes())[service] = bytes;
  }
  for (const CallSample& sample : run.deaths) {
    v1::DeathSample* death = record.add_death_samples();
    death->set_intended_offset_s(absl::ToDoubleSeconds(sample.intended_offset));
    death->set_latency_ms(absl::ToDoubleMilliseconds(sample.latency));
    death->set_code(static_cast<int>(sample.code));
  }
  for (const BreakerSample& sample : run.breakers) {
    v1::BreakerSample* breaker = record.add_breaker_samples();
    breaker->set_offset_s(absl::ToDoubleSeconds(sample.offset));
    breaker->set_target(sample.target);
    breaker->set_state(sample.state);
  }
  return record;
}

// One row per variant over every scenario it ran: the figures a reader weighing the patterns
// compares first.
std::string SideBySide(const std::vector<RunResult>& runs) {
  std::vector<std::string> variants;
  for (const RunResult& run : runs) {
    if (std::find(variants.begin(), variants.end(), run.variant) == variants.end()) {
      variants.push_back(run.variant);
    }
  }
  std::string table =
      "## All variants side by side\n\n"
      "Over every scenario each variant ran (the scenarios below): the lowest share of deaths "
      "recorded and where; RecordDeath p99 and the delay from acknowledgement to both effects "
      "in the healthy baseline; the slowest effect in any scenario and where; and, summed over "
      "its scenarios, acknowledged deaths lost, effects applied twice (\"-\": not counted, "
      "the synchronous repeats carry an idempotency key) and consistency violations.\n\n"
      "| variant | scenarios | deaths recorded, lowest | baseline RecordDeath p99 ms "
      "| baseline ack to both effects p50 / max ms | slowest effect ms | deaths lost "
      "| duplicate effects | violations |\n"
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
  for (const std::string& variant : variants) {
    int scenarios = 0;
    int lost = 0;
    int violations = 0;
    double duplicates = -1;
    double lowest = 101;
    std::string lowest_in;
    double slowest = -1;
    std::string slowest_in;
    std::string baseline_p99 = "-";
    std::string baseline_effects = "-";
    for (const RunResult& run : runs) {
      if (run.variant != variant) continue;
      const Figures figures = FiguresOf(run);
      ++scenarios;
      lost += figures.lost;
      violations += figures.violations;
      if (figures.duplicate_effects >= 0) {
        duplicates = std::max(0.0, duplicates) + figures.duplicate_effects;
      }
      if (figures.deaths.success_percent < lowest) {
        lowest = figures.deaths.success_percent;
        lowest_in = run.scenario;
      }
      if (figures.effects.max > slowest) {
        slowest = figures.effects.max;
        slowest_in = run.scenario;
      }
      if (run.scenario == "baseline") {
        baseline_p99 = fmt::format("{:.1f}", figures.deaths.p99);
        baseline_effects = fmt::format("{:.1f} / {:.1f}", figures.effects.p50, figures.effects.max);
      }
    }
    table += fmt::format("| {} | {} | {:.1f} % ({}) | {} | {} | {:.0f} ({}) | {} | {} | {} |\n",
                         variant, scenarios, lowest, lowest_in, baseline_p99, baseline_effects,
                         slowest, slowest_in, lost, OrDash(duplicates, "{:.0f}"), violations);
  }
  return table + "\n";
}

}  // namespace

std::string Report(const std::vector<Scenario>& scenarios, const std::vector<RunResult>& runs,
                   const ReportContext& context) {
  std::string report =
      fmt::format("# Fault-injection benchmark\n\nMachine: {}. Suite time: {}.\n\n{}{}",
                  context.machine.empty() ? "not stated" : context.machine,
                  absl::FormatDuration(absl::Trunc(context.elapsed, absl::Seconds(1))), kPreamble,
                  context.capacity);
  report += SideBySide(runs);
  for (const Scenario& scenario : scenarios) {
    report += ScenarioSection(scenario, runs, context.charts);
  }
  return report;
}

v1::RunResults ResultsOf(const std::vector<RunResult>& runs) {
  v1::RunResults results;
  for (const RunResult& run : runs) *results.add_runs() = RecordOf(run);
  return results;
}

}  // namespace fault_bench
