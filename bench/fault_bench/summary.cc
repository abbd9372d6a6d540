#include "fault_bench/summary.h"

#include <algorithm>
#include <optional>

namespace fault_bench {

Summary Summarise(const std::vector<CallSample>& samples, absl::Duration duration) {
  Summary summary;
  std::vector<double> all;
  std::vector<double> failed;
  for (const CallSample& sample : samples) {
    const double ms = absl::ToDoubleMilliseconds(sample.latency);
    all.push_back(ms);
    ++summary.calls;
    if (sample.code == grpc::StatusCode::OK) {
      ++summary.ok;
    } else {
      failed.push_back(ms);
    }
  }
  summary.success_percent = summary.calls ? 100.0 * summary.ok / summary.calls : 0.0;
  summary.throughput = summary.ok / absl::ToDoubleSeconds(duration);
  summary.p50 = Quantile(all, 0.5);
  summary.p90 = Quantile(all, 0.9);
  summary.p99 = Quantile(all, 0.99);
  summary.p999 = Quantile(all, 0.999);
  summary.max = all.empty() ? 0 : *std::max_element(all.begin(), all.end());
  summary.failed_p99 = Quantile(failed, 0.99);
  return summary;
}

double FailedWhileOpenP99(const RunResult& run) {
  std::vector<std::pair<absl::Duration, bool>> open;  // Sample time, morgue open.
  for (const auto& sample : run.breakers) {
    if (sample.target == "morgue") {
      open.emplace_back(sample.offset, sample.state == "OPEN" || sample.state == "FORCED_OPEN");
    }
  }
  std::vector<double> latencies;
  for (const CallSample& sample : run.deaths) {
    if (sample.code == grpc::StatusCode::OK) continue;
    auto after = std::upper_bound(
        open.begin(), open.end(), sample.intended_offset,
        [](absl::Duration offset, const auto& entry) { return offset < entry.first; });
    if (after == open.begin() || !std::prev(after)->second) continue;
    latencies.push_back(absl::ToDoubleMilliseconds(sample.latency));
  }
  return latencies.empty() ? -1 : Quantile(latencies, 0.99);
}

BreakerRejections RejectedByBreaker(const RunResult& run) {
  std::vector<double> latencies;
  for (const CallSample& sample : run.deaths) {
    if (sample.rejected_by_breaker) latencies.push_back(absl::ToDoubleMilliseconds(sample.latency));
  }
  BreakerRejections rejections;
  rejections.calls = static_cast<int>(latencies.size());
  if (!latencies.empty()) rejections.p99 = Quantile(latencies, 0.99);
  return rejections;
}

double BreakerOpenSeconds(const RunResult& run) {
  double open = 0;
  for (const auto& [target, seconds] : run.breaker_open_seconds) open += seconds;
  return open;
}

double PeakResidentMiB(const RunResult& run) {
  long rss = 0;
  for (const auto& [service, bytes] : run.peak_resident_bytes) {
    if (service != "nats-server") rss = std::max(rss, bytes);
  }
  return static_cast<double>(rss) / 1048576.0;
}

double BrokerResidentMiB(const RunResult& run) {
  const auto broker = run.peak_resident_bytes.find("nats-server");
  return broker == run.peak_resident_bytes.end() ? -1
                                                 : static_cast<double>(broker->second) / 1048576.0;
}

EffectDelays EffectDelaysOf(const RunResult& run) {
  std::vector<double> delays;
  for (const RunResult::EffectTimes& times : run.effects) {
    if (times.visible < absl::ZeroDuration()) continue;
    delays.push_back(absl::ToDoubleMilliseconds(times.visible - times.acknowledged));
  }
  EffectDelays result;
  result.seen = static_cast<int>(delays.size());
  result.p50 = Quantile(delays, 0.5);
  result.p99 = Quantile(delays, 0.99);
  result.max = delays.empty() ? 0 : *std::max_element(delays.begin(), delays.end());
  return result;
}

namespace {

// The window `offset` falls in, if any.
const std::pair<absl::Duration, absl::Duration>* WindowOf(const RunResult& run,
                                                          absl::Duration offset) {
  for (const auto& window : run.fault_windows) {
    if (offset >= window.first && offset < window.second) return &window;
  }
  return nullptr;
}

bool ShortlyAfterAWindow(const RunResult& run, absl::Duration offset) {
  for (const auto& window : run.fault_windows) {
    if (offset >= window.second && offset < window.second + absl::Seconds(1)) return true;
  }
  return false;
}

absl::Duration LastFaultEnd(const RunResult& run) {
  absl::Duration end = absl::ZeroDuration();
  for (const auto& window : run.fault_windows) end = std::max(end, window.second);
  return end;
}

}  // namespace

FaultLatency FaultLatencyOf(const RunResult& run) {
  std::vector<double> during;
  std::vector<double> healthy;
  for (const CallSample& sample : run.deaths) {
    const double ms = absl::ToDoubleMilliseconds(sample.latency);
    if (WindowOf(run, sample.intended_offset) != nullptr) {
      during.push_back(ms);
    } else if (!ShortlyAfterAWindow(run, sample.intended_offset)) {
      healthy.push_back(ms);
    }
  }
  FaultLatency result;
  if (!during.empty()) result.during_p99 = Quantile(during, 0.99);
  if (!healthy.empty()) result.healthy_p99 = Quantile(healthy, 0.99);
  return result;
}

double BacklogDrainedAfter(const RunResult& run) {
  if (run.fault_windows.empty()) return 0;
  const absl::Duration fault_end = LastFaultEnd(run);
  absl::Duration drained = fault_end;
  for (const RunResult::EffectTimes& times : run.effects) {
    if (times.acknowledged > fault_end) continue;
    if (times.visible < absl::ZeroDuration()) return -1;
    drained = std::max(drained, times.visible);
  }
  return absl::ToDoubleSeconds(drained - fault_end);
}

double AppliedAfterFaultP99(const RunResult& run) {
  std::vector<double> delays;
  for (const RunResult::EffectTimes& times : run.effects) {
    const auto* window = WindowOf(run, times.acknowledged);
    if (window == nullptr) continue;
    if (times.visible < absl::ZeroDuration()) return -1;
    delays.push_back(std::max(0.0, absl::ToDoubleMilliseconds(times.visible - window->second)));
  }
  return delays.empty() ? -1 : Quantile(delays, 0.99);
}

double WritesBackAfter(const RunResult& run) {
  if (run.fault_windows.empty()) return 0;
  const absl::Duration fault_end = LastFaultEnd(run);
  std::optional<absl::Duration> first;
  for (const CallSample& sample : run.deaths) {
    if (sample.intended_offset < fault_end || sample.code != grpc::StatusCode::OK) continue;
    const absl::Duration answered = sample.intended_offset + sample.latency;
    if (!first || answered < *first) first = answered;
  }
  return first ? absl::ToDoubleSeconds(*first - fault_end) : -1;
}

int DeadlineExceeded(const RunResult& run) {
  return static_cast<int>(std::count_if(run.deaths.begin(), run.deaths.end(), [](const auto& call) {
    return call.code == grpc::StatusCode::DEADLINE_EXCEEDED;
  }));
}

}  // namespace fault_bench
