#include "fault_bench/charts.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace fault_bench {
namespace {

constexpr double kBucketSeconds = 0.5;

// The smallest positive and the largest latency a chart's panel shows.
struct LatencyRange {
  double lowest = 0;
  double highest = 0;
  void Add(double ms) {
    if (ms <= 0) return;
    lowest = lowest == 0 ? ms : std::min(lowest, ms);
    highest = std::max(highest, ms);
  }
  // A panel whose values span more than a decade is drawn on a log axis, so that the quiet
  // stretches stay readable beside the spikes.
  bool SpansDecades() const { return lowest > 0 && highest / lowest > 10; }
};

// One row per half second of intended send time: p50 and p99 latency (ms), error share (%), and
// whether each breaker was open (1) for most of the bucket's samples. Widens `range` by the
// latencies written.
void WriteSeries(const RunResult& run, const std::string& path, LatencyRange& range) {
  const int buckets = static_cast<int>(absl::ToDoubleSeconds(run.duration) / kBucketSeconds) + 1;
  std::vector<std::vector<double>> latencies(static_cast<std::size_t>(buckets));
  std::vector<int> errors(static_cast<std::size_t>(buckets), 0);
  for (const CallSample& sample : run.deaths) {
    const auto bucket = static_cast<std::size_t>(
        std::clamp(static_cast<int>(absl::ToDoubleSeconds(sample.intended_offset) / kBucketSeconds),
                   0, buckets - 1));
    latencies[bucket].push_back(absl::ToDoubleMilliseconds(sample.latency));
    if (sample.code != grpc::StatusCode::OK) ++errors[bucket];
  }
  std::map<std::string, std::vector<std::pair<int, int>>> open;  // Open and total samples.
  for (const BreakerSample& sample : run.breakers) {
    auto& counts = open[sample.target];
    counts.resize(static_cast<std::size_t>(buckets));
    const auto bucket = static_cast<std::size_t>(std::clamp(
        static_cast<int>(absl::ToDoubleSeconds(sample.offset) / kBucketSeconds), 0, buckets - 1));
    counts[bucket].second++;
    if (sample.state == "OPEN" || sample.state == "FORCED_OPEN") counts[bucket].first++;
  }
  std::ofstream file(path);
  file << "# t\tp50_ms\tp99_ms\terror_pct\tmorgue_open\tappointments_open\n";
  for (int b = 0; b < buckets; ++b) {
    const auto index = static_cast<std::size_t>(b);
    const std::vector<double>& bucket = latencies[index];
    auto open_share = [&](const std::string& target) {
      auto it = open.find(target);
      if (it == open.end() || it->second[index].second == 0) return 0.0;
      return it->second[index].first * 2 > it->second[index].second ? 1.0 : 0.0;
    };
    const double p50 = Quantile(bucket, 0.5);
    const double p99 = Quantile(bucket, 0.99);
    range.Add(p50);
    range.Add(p99);
    file << absl::StrFormat(
        "%.2f\t%.2f\t%.2f\t%.1f\t%.0f\t%.0f\n", (b + 0.5) * kBucketSeconds, p50, p99,
        bucket.empty() ? 0.0 : 100.0 * errors[index] / static_cast<double>(bucket.size()),
        open_share("morgue"), open_share("appointments"));
  }
}

}  // namespace

absl::Status DrawScenario(const Scenario& scenario, const std::vector<RunResult>& runs,
                          const std::string& out) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    return absl::UnavailableError("gnuplot is not installed (Debian package gnuplot-nox)");
  }
  std::filesystem::create_directories(out + "/data");
  // Paths in the script are relative to `out`, where gnuplot runs: a committed report can be
  // drawn again anywhere from its data/ folder.
  std::vector<std::pair<std::string, std::string>> series;  // Variant, data file.
  LatencyRange range;
  for (const RunResult& run : runs) {
    if (run.scenario != scenario.name) continue;
    const std::string file = absl::StrCat("data/", scenario.name, "-", run.variant, ".tsv");
    WriteSeries(run, absl::StrCat(out, "/", file), range);
    series.emplace_back(run.variant, file);
  }
  const std::string log_axis = range.SpansDecades() ? "set logscale y\n" : "";
  const std::string log_label = range.SpansDecades() ? " (log)" : "";
  std::string shading;
  for (const auto& [from, to] : scenario.FaultWindows()) {
    absl::StrAppendFormat(&shading,
                          "set object rect from %.2f, graph 0 to %.2f, graph 1 behind "
                          "fillcolor rgb '#ffe0e0' fillstyle solid noborder\n",
                          absl::ToDoubleSeconds(from), absl::ToDoubleSeconds(to));
  }
  auto plot = [&](int column, const std::string& suffix) {
    std::string command = "plot ";
    for (std::size_t i = 0; i < series.size(); ++i) {
      absl::StrAppendFormat(&command, "%s'%s' using 1:%d with linespoints title '%s%s'",
                            i == 0 ? "" : ", ", series[i].second, column, series[i].first, suffix);
    }
    return command + "\n";
  };
  const std::string script_name = absl::StrCat("data/", scenario.name, ".gnuplot");
  std::ofstream script(absl::StrCat(out, "/", script_name));
  script << "set terminal pngcairo size 1000,900 noenhanced font ',9'\n"
         << "set output '" << scenario.name << ".png'\n"
         << "set multiplot layout 4,1 title '" << scenario.name
         << " (fault windows shaded; x: intended send time, s)'\n"
         << "set grid\nset key outside right\nset xrange [0:"
         << absl::ToDoubleSeconds(scenario.duration) << "]\n"
         << shading << log_axis << "set ylabel 'p50 ms" << log_label << "'\n"
         << plot(2, "") << "set ylabel 'p99 ms" << log_label << "'\n"
         << plot(3, "") << "unset logscale y\nset ylabel 'errors %'\nset yrange [0:100]\n"
         << plot(4, "") << "set ylabel 'morgue breaker open'\nset yrange [-0.1:1.1]\n"
         << plot(5, "") << "unset multiplot\n";
  script.close();
  const std::string command = absl::StrCat("cd '", out, "' && gnuplot '", script_name, "'");
  if (std::system(command.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("gnuplot failed on ", out, "/", script_name));
  }
  return absl::OkStatus();
}

}  // namespace fault_bench
