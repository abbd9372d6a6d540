#include "fault_bench/findings.h"

#include <algorithm>

#include "absl/strings/str_join.h"

namespace fault_bench {

Figures FiguresOf(const RunResult& run) {
  Figures figures;
  figures.variant = run.variant;
  figures.deaths = Summarise(run.deaths, run.duration);
  figures.reads = Summarise(run.reads, run.duration);
  figures.appointment_reads = Summarise(run.appointment_reads, run.duration);
  figures.attempts_per_death = run.morgue_attempts_per_death;
  figures.failed_while_open_p99 = FailedWhileOpenP99(run);
  figures.rejected = RejectedByBreaker(run);
  figures.breaker_open_seconds = BreakerOpenSeconds(run);
  figures.violations = run.consistency.violations + (run.consistency.incomplete ? 1 : 0);
  figures.consistent_after = absl::ToDoubleSeconds(run.time_to_consistency);
  figures.effects = EffectDelaysOf(run);
  figures.fault_latency = FaultLatencyOf(run);
  figures.drained_after = BacklogDrainedAfter(run);
  // The services agree once the backlog of effects has drained, too (the consistency checks
  // after the load may start after it did).
  if (figures.drained_after > figures.consistent_after) {
    figures.consistent_after = figures.drained_after;
  }
  figures.applied_after_fault_p99 = AppliedAfterFaultP99(run);
  figures.lost = LostDeaths(run);
  figures.peak_backlog = run.peak_backlog;
  figures.duplicate_deliveries = run.duplicate_deliveries;
  if (const auto morgue = run.busy_refusals.find("morgue"); morgue != run.busy_refusals.end()) {
    figures.morgue_busy_refusals = morgue->second;
  }
  figures.duplicate_effects = run.duplicate_effects;
  figures.writes_back_after = WritesBackAfter(run);
  figures.deadline_exceeded = DeadlineExceeded(run);
  return figures;
}

const Figures& FigureSet::operator[](const std::string& variant) const {
  return *std::find_if(all_.begin(), all_.end(),
                       [&](const Figures& figures) { return figures.variant == variant; });
}

bool FigureSet::Has(const std::string& variant) const {
  return std::any_of(all_.begin(), all_.end(),
                     [&](const Figures& figures) { return figures.variant == variant; });
}

int FigureSet::violations() const {
  int violations = 0;
  for (const Figures& figures : all_) violations += figures.violations;
  return violations;
}

int FigureSet::lost() const {
  int lost = 0;
  for (const Figures& figures : all_) lost += figures.lost;
  return lost;
}

double FigureSet::duplicate_effects() const {
  double duplicates = 0;
  for (const Figures& figures : all_) duplicates += std::max(0.0, figures.duplicate_effects);
  return duplicates;
}

std::string Findings(const Scenario& scenario, const std::vector<const RunResult*>& runs) {
  std::vector<Figures> all;
  for (const RunResult* run : runs) all.push_back(FiguresOf(*run));
  if (all.empty()) return "";
  const FigureSet figures(std::move(all));
  std::string text = fmt::format(
      "**Findings.** Deaths recorded: {}. RecordDeath p99: {}. Background GetPatient p99: {}; "
      "ListAppointments p99: {}. ",
      figures.Each("{:.1f} %", [](const Figures& f) { return f.deaths.success_percent; }),
      figures.Each("{:.1f} ms", [](const Figures& f) { return f.deaths.p99; }),
      figures.Each("{:.1f} ms", [](const Figures& f) { return f.reads.p99; }),
      figures.Each("{:.1f} ms", [](const Figures& f) { return f.appointment_reads.p99; }));
  std::vector<std::string> missing;
  for (const std::string& variant : scenario.judged_on) {
    if (!figures.Has(variant)) missing.push_back(variant);
  }
  if (!scenario.judge) {
    // A scenario that only reports its figures.
  } else if (!missing.empty()) {
    text += fmt::format("The claim is judged on variants that did not run here: {}. ",
                        absl::StrJoin(missing, ", "));
  } else {
    const Judgement judgement = scenario.judge(figures);
    text += judgement.figures;
    text += judgement.holds ? "The figures support the claim."
                            : "The figures do NOT support the claim.";
  }
  text +=
      fmt::format(" Consistent, with no undo call owed, after the last fault: {}.",
                  figures.Each("{:.1f} s", [](const Figures& f) { return f.consistent_after; }));
  text += fmt::format(
      " Acknowledged deaths lost: {}; duplicate effects: {:.0f}; consistency violations: {}"
      " (all variants; the target is 0 for each).",
      figures.lost(), figures.duplicate_effects(), figures.violations());
  return text;
}

}  // namespace fault_bench
