#include "fault_bench/findings.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "fault_bench/summary.h"

namespace fault_bench {
namespace {

struct Figures {
  std::string variant;
  Summary deaths;
  Summary reads;
  Summary appointment_reads;
  double attempts_per_death = 0;
  double failed_while_open_p99 = -1;
  BreakerRejections rejected;
  double breaker_open_seconds = 0;
  int violations = 0;
  double consistent_after = 0;
};

const Figures* Find(const std::vector<Figures>& all, const std::string& variant) {
  for (const Figures& figures : all) {
    if (figures.variant == variant) return &figures;
  }
  return nullptr;
}

std::string Verdict(bool holds) {
  return holds ? "The figures support the claim." : "The figures do NOT support the claim.";
}

// "naive 98.1 %, retries 99.0 %" for one figure of every variant.
template <typename Get>
std::string Each(const std::vector<Figures>& all, const char* format, Get get) {
  std::vector<std::string> parts;
  for (const Figures& figures : all) {
    parts.push_back(absl::StrCat(figures.variant, " ", absl::StrFormat(format, get(figures))));
  }
  return absl::StrJoin(parts, ", ");
}

}  // namespace

std::string Findings(const Scenario& scenario, const std::vector<const RunResult*>& runs) {
  std::vector<Figures> all;
  for (const RunResult* run : runs) {
    Figures figures;
    figures.variant = run->variant;
    figures.deaths = Summarise(run->deaths, run->duration);
    figures.reads = Summarise(run->reads, run->duration);
    figures.appointment_reads = Summarise(run->appointment_reads, run->duration);
    figures.attempts_per_death = run->morgue_attempts_per_death;
    figures.failed_while_open_p99 = FailedWhileOpenP99(*run);
    figures.rejected = RejectedByBreaker(*run);
    figures.breaker_open_seconds = BreakerOpenSeconds(*run);
    figures.violations = run->consistency.violations + (run->consistency.incomplete ? 1 : 0);
    figures.consistent_after = absl::ToDoubleSeconds(run->time_to_consistency);
    all.push_back(figures);
  }
  if (all.empty()) return "";
  const Figures* naive = Find(all, "naive");
  const Figures* retries = Find(all, "retries");
  const Figures* resilient = Find(all, "resilient");
  int violations = 0;
  for (const Figures& figures : all) violations += figures.violations;

  std::string text = absl::StrCat(
      "**Findings.** Deaths recorded: ",
      Each(all, "%.1f %%", [](const Figures& f) { return f.deaths.success_percent; }),
      ". RecordDeath p99: ", Each(all, "%.1f ms", [](const Figures& f) { return f.deaths.p99; }),
      ". Background GetPatient p99: ",
      Each(all, "%.1f ms", [](const Figures& f) { return f.reads.p99; }),
      "; ListAppointments p99: ",
      Each(all, "%.1f ms", [](const Figures& f) { return f.appointment_reads.p99; }), ". ");
  const std::string& name = scenario.name;
  if (name == "baseline") {
    // Judged on p90: with a few hundred calls a p99 is one or two samples, and on a shared
    // 2-core machine those are noise.
    double low = all[0].deaths.p90;
    double high = low;
    for (const Figures& figures : all) {
      low = std::min(low, figures.deaths.p90);
      high = std::max(high, figures.deaths.p90);
    }
    absl::StrAppend(&text, "RecordDeath p90: ",
                    Each(all, "%.1f ms", [](const Figures& f) { return f.deaths.p90; }),
                    absl::StrFormat(", within %.1f ms of each other (the claim allows 2 ms or "
                                    "50 %% of the lowest). ",
                                    high - low));
    text += Verdict(high - low <= std::max(2.0, 0.5 * low));
  } else if (name == "morgue_down" && naive && retries && resilient) {
    absl::StrAppend(
        &text, "Morgue attempts per death: ",
        Each(all, "%.2f", [](const Figures& f) { return f.attempts_per_death; }),
        ". Failed calls' p99: ",
        Each(all, "%.1f ms", [](const Figures& f) { return f.deaths.failed_p99; }),
        absl::StrFormat(". The resilient variant's breaker was open %.1f s; the %d calls it "
                        "refused failed with a p99 of %.1f ms (target: under 5 ms), and all the "
                        "calls that failed while it was sampled open, half-open probes "
                        "included, with %.1f ms. It sent %.2f attempts per death (target: at "
                        "most 1.1), against %.2f with retries alone. ",
                        resilient->breaker_open_seconds, resilient->rejected.calls,
                        resilient->rejected.p99, resilient->failed_while_open_p99,
                        resilient->attempts_per_death, retries->attempts_per_death));
    text += Verdict(resilient->rejected.calls > 0 && resilient->rejected.p99 < 5 &&
                    resilient->attempts_per_death <= 1.1 &&
                    resilient->attempts_per_death < retries->attempts_per_death);
  } else if (name == "appointments_slow" && naive && resilient) {
    absl::StrAppend(
        &text, "Slowest RecordDeath: ",
        Each(all, "%.0f ms", [](const Figures& f) { return f.deaths.max; }),
        absl::StrFormat(". Deadlines capped the resilient variant's wait at the cost of "
                        "failing %.1f %% of deaths (each undone, so nothing is half-recorded); "
                        "the naive variant waited as long as the delay. ",
                        100 - resilient->deaths.success_percent));
    text += Verdict(resilient->deaths.max < naive->deaths.max);
  } else if (name == "error_burst_flapping" && naive && retries && resilient) {
    absl::StrAppend(&text, "Morgue attempts per death: ",
                    Each(all, "%.2f", [](const Figures& f) { return f.attempts_per_death; }),
                    ". Retries raise the success rate above the naive variant's at the price of "
                    "more attempts; the resilient variant's budget and breaker send fewer "
                    "attempts than retries alone. ");
    text += Verdict(retries->deaths.success_percent > naive->deaths.success_percent &&
                    retries->attempts_per_death > naive->attempts_per_death &&
                    resilient->attempts_per_death < retries->attempts_per_death);
  } else if (name == "morgue_frozen" && naive && resilient) {
    absl::StrAppend(&text, "Slowest RecordDeath: ",
                    Each(all, "%.0f ms", [](const Figures& f) { return f.deaths.max; }),
                    ". Without a deadline a call waits for as long as the service is frozen; "
                    "with one it is freed when the deadline passes. ");
    text += Verdict(resilient->deaths.max < naive->deaths.max);
  } else if (name == "morgue_killed" && naive) {
    absl::StrAppend(&text, "Failed calls' p99: ",
                    Each(all, "%.1f ms", [](const Figures& f) { return f.deaths.failed_p99; }),
                    absl::StrFormat(". A killed process refuses connections, so even naive calls "
                                    "fail at once (the claim asks for a p99 under 50 ms; "
                                    "retries spend their backoff first). Consistency "
                                    "violations after the restart, all variants: %d. ",
                                    violations));
    text += Verdict(violations == 0 && naive->deaths.failed_p99 < 50);
  }
  absl::StrAppend(&text, " Consistent, with no undo call owed, after the last fault: ",
                  Each(all, "%.1f s", [](const Figures& f) { return f.consistent_after; }), ".");
  return text;
}

}  // namespace fault_bench
