#include "fault_bench/summary.h"

#include <algorithm>

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
  for (const auto& [service, bytes] : run.peak_resident_bytes) rss = std::max(rss, bytes);
  return static_cast<double>(rss) / 1048576.0;
}

}  // namespace fault_bench
