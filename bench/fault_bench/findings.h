// The paragraph under each scenario's table: the figures every scenario reports, then the
// scenario's own judgement of its claim (Scenario::judge, scenario.cc) on the figures of this
// run. Every number comes from the runs.
#ifndef HOSPITAL_BENCH_FAULT_BENCH_FINDINGS_H_
#define HOSPITAL_BENCH_FAULT_BENCH_FINDINGS_H_

#include <string>
#include <vector>

#include <fmt/format.h>

#include "fault_bench/run.h"
#include "fault_bench/scenario.h"
#include "fault_bench/summary.h"

namespace fault_bench {

// The figures of one run that findings and judgements read.
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
  EffectDelays effects;
  FaultLatency fault_latency;
  double drained_after = 0;             // BacklogDrainedAfter
  double applied_after_fault_p99 = -1;  // AppliedAfterFaultP99
  int lost = 0;
  double peak_backlog = 0;
  double duplicate_deliveries = 0;
  double duplicate_effects = -1;
  // Calls the morgue refused for lack of serving threads (RunResult::busy_refusals).
  double morgue_busy_refusals = 0;
  double writes_back_after = 0;  // WritesBackAfter
  int deadline_exceeded = 0;     // DeadlineExceeded
};

Figures FiguresOf(const RunResult& run);

// The figures of every variant that ran one scenario.
class FigureSet final {
 public:
  explicit FigureSet(std::vector<Figures> all) : all_(std::move(all)) {}

  const std::vector<Figures>& all() const { return all_; }
  // The variant's figures; the judge only runs when every variant in Scenario::judged_on ran.
  const Figures& operator[](const std::string& variant) const;
  bool Has(const std::string& variant) const;
  // Consistency violations over every variant.
  int violations() const;
  // Acknowledged deaths lost, and duplicate effects, over every variant.
  int lost() const;
  double duplicate_effects() const;

  // One figure of every variant, formatted with `format` (fmt syntax): "naive 98.1 %,
  // retries 99.0 %".
  template <typename Get>
  std::string Each(const char* format, Get get) const {
    std::string text;
    for (const Figures& figures : all_) {
      if (!text.empty()) text += ", ";
      text += figures.variant + " " + fmt::format(fmt::runtime(format), get(figures));
    }
    return text;
  }

 private:
  std::vector<Figures> all_;
};

// `runs` are the scenario's runs, one per variant.
std::string Findings(const Scenario& scenario, const std::vector<const RunResult*>& runs);

}  // namespace fault_bench

#endif  // HOSPITAL_BENCH_FAULT_BENCH_FINDINGS_H_
