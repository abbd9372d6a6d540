#include "fault_bench/scenario.h"

#include <algorithm>
#include <map>

namespace fault_bench {
namespace {

Step Set(double at, Service service, std::string json) {
  return {absl::Seconds(at), Step::Kind::kSetFault, service, std::move(json)};
}
Step Clear(double at, Service service) {
  return {absl::Seconds(at), Step::Kind::kClearFaults, service, ""};
}
Step Do(double at, Step::Kind kind, Service service) {
  return {absl::Seconds(at), kind, service, ""};
}

}  // namespace

const char* ServiceName(Service service) {
  switch (service) {
    case Service::kPatients:
      return "patients";
    case Service::kMorgue:
      return "morgue";
    case Service::kAppointments:
      return "appointments";
  }
  return "?";
}

absl::Duration Scenario::FaultsEnd() const {
  absl::Duration end = absl::ZeroDuration();
  for (const Step& step : timeline) {
    if (step.kind == Step::Kind::kClearFaults || step.kind == Step::Kind::kUnfreeze ||
        step.kind == Step::Kind::kRestart) {
      end = std::max(end, step.at);
    }
  }
  return end;
}

std::vector<std::pair<absl::Duration, absl::Duration>> Scenario::FaultWindows() const {
  std::vector<std::pair<absl::Duration, absl::Duration>> windows;
  std::map<int, absl::Duration> open;  // By service.
  for (const Step& step : timeline) {
    const int key = static_cast<int>(step.service);
    switch (step.kind) {
      case Step::Kind::kSetFault:
      case Step::Kind::kFreeze:
      case Step::Kind::kKill:
        if (open.count(key) == 0) open[key] = step.at;
        break;
      case Step::Kind::kClearFaults:
      case Step::Kind::kUnfreeze:
      case Step::Kind::kRestart:
        if (open.count(key) != 0) {
          windows.emplace_back(open[key], step.at);
          open.erase(key);
        }
        break;
    }
  }
  return windows;
}

std::vector<Scenario> Scenarios(double rate_scale, double time_scale) {
  constexpr char kMorgueDown[] =
      R"({"id": "down", "method": "hospital.morgue.v1.MorgueService/*",
          "abort": {"code": "UNAVAILABLE", "message": "injected outage"}})";
  constexpr char kAppointmentsSlow[] =
      R"({"id": "slow", "method": "hospital.appointments.v1.AppointmentsService/*",
          "delay": {"fixed": "1s", "jitter": "0.2s"}})";
  constexpr char kMorgueFlaky[] =
      R"({"id": "flaky", "method": "hospital.morgue.v1.MorgueService/*", "percentage": 50,
          "abort": {"code": "UNAVAILABLE", "message": "injected burst"}})";
  std::vector<Scenario> scenarios = {
      {"baseline",
       "With every service healthy, the variants cost about the same.",
       absl::Seconds(8),
       40,
       20,
       {}},
      {"morgue_down",
       "A downstream outage blocks or fails the caller (temporal coupling); a breaker turns "
       "slow failures into fast ones and stops the retries that pile onto the failing service.",
       absl::Seconds(8),
       40,
       20,
       {Set(2, Service::kMorgue, kMorgueDown), Clear(5, Service::kMorgue)}},
      {"appointments_slow",
       "One slow service slows everything above it; deadlines bound the damage.",
       absl::Seconds(8),
       40,
       20,
       {Set(2, Service::kAppointments, kAppointmentsSlow), Clear(5, Service::kAppointments)}},
      {"error_burst_flapping",
       "Intermittent errors: retries hide some of them at the price of more load; a budget "
       "bounds that price.",
       absl::Seconds(8),
       40,
       20,
       {Set(1, Service::kMorgue, kMorgueFlaky), Clear(2, Service::kMorgue),
        Set(3, Service::kMorgue, kMorgueFlaky), Clear(4, Service::kMorgue),
        Set(5, Service::kMorgue, kMorgueFlaky), Clear(6, Service::kMorgue)}},
      {"morgue_frozen",
       "A frozen service accepts connections but never answers: only deadlines free the caller.",
       absl::Seconds(8),
       40,
       20,
       {Do(2, Step::Kind::kFreeze, Service::kMorgue),
        Do(4.5, Step::Kind::kUnfreeze, Service::kMorgue)}},
      {"morgue_killed",
       "A killed and restarted service: calls fail fast while it is gone; its data survives.",
       absl::Seconds(8),
       40,
       20,
       {Do(2, Step::Kind::kKill, Service::kMorgue),
        Do(4.5, Step::Kind::kRestart, Service::kMorgue)}},
  };
  for (Scenario& scenario : scenarios) {
    scenario.duration = scenario.duration * time_scale;
    scenario.deaths_per_second *= rate_scale;
    scenario.reads_per_second *= rate_scale;
    for (Step& step : scenario.timeline) step.at = step.at * time_scale;
  }
  return scenarios;
}

}  // namespace fault_bench
