#include "fault_bench/run.h"

#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include <google/protobuf/util/json_util.h>
#include <grpcpp/create_channel.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/grpc_status.h"
#include "base/status.h"
#include "base/sync.h"
#include "echo/v1/echo.grpc.pb.h"
#include "fault_bench/effect_reader.h"
#include "fault_bench/load.h"
#include "fault_bench/summary.h"
#include "fault_bench/system.h"
#include "fault_bench/timeline.h"
#include "fault_bench/users.h"
#include "hospital/faults/v1/faults.grpc.pb.h"
#include "hospital/patients/v1/events.pb.h"
#include "resilience/v1/admin.grpc.pb.h"
#include "server_kit/rpc_support.h"
#include "server_kit/serve.h"
#include "server_kit/tls.h"
#include "testing_support/nats_server.h"
#include "testing_support/service_process.h"

namespace fault_bench {
namespace {

namespace patients_v1 = hospital::patients::v1;
namespace morgue_v1 = hospital::morgue::v1;
namespace appointments_v1 = hospital::appointments::v1;
namespace faults_v1 = hospital::faults::v1;

}  // namespace

int LostDeaths(const RunResult& run) {
  int lost = 0;
  for (const RunResult::EffectTimes& times : run.effects) {
    lost += times.visible < absl::ZeroDuration() ? 1 : 0;
  }
  return lost;
}

double Quantile(std::vector<double> values, double quantile) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1,
                         static_cast<std::size_t>(quantile * static_cast<double>(values.size())))];
}

namespace {

// One scenario against one variant on fresh services: seed, warm up, run the load with the
// timeline of faults and the samplers beside it, then measure and wait for consistency.
class ScenarioRun final {
 public:
  ScenarioRun(const Scenario& scenario, const Variant& variant, const RunOptions& options,
              const std::string& dir)
      : scenario_(scenario),
        options_(options),
        variant_(variant),
        dir_(dir),
        system_(options, variant, dir, scenario.morgue_flags) {
    result_.scenario = scenario.name;
    result_.variant = variant.name;
    result_.duration = scenario.duration;
    result_.fault_windows = scenario.FaultWindows();
    deaths_ =
        static_cast<int>(scenario.deaths_per_second * absl::ToDoubleSeconds(scenario.duration));
    warmup_deaths_ = scenario.warmup_deaths >= 0 ? scenario.warmup_deaths : options.warmup_deaths;
  }
  ~ScenarioRun() {
    StopWatching();
    system_.Stop();
  }

  absl::StatusOr<RunResult> Run() {
    RETURN_IF_ERROR(system_.Start());
    RETURN_IF_ERROR(
        Seed(system_, deaths_ + warmup_deaths_, options_.appointments_per_patient, ids_));
    patients_ = patients_v1::PatientsService::NewStub(system_.Channel(Service::kPatients));
    WarmUp();
    AwaitWarmUpEffects();
    const double morgue_before = Deliveries(Service::kMorgue);
    const double appointments_before = Deliveries(Service::kAppointments);
    std::map<Service, double> retries_before;
    for (Service service : {Service::kPatients, Service::kMorgue, Service::kAppointments}) {
      retries_before[service] = Counter(service, "hospital_db_transaction_retries_total", {});
    }
    watcher_ = std::thread([this] { WatchEffects(); });
    RETURN_IF_ERROR(RunLoad());
    MeasureBreakersAndMemory();
    AwaitConsistency();
    StopWatching();
    if (deaths_ > 0) {
      // The downstreams' work per death of the load: every attempt or delivery of a death to
      // them, repeats included, until the services agreed (the batch variants deliver the last
      // deaths of the load after it ended).
      result_.morgue_attempts_per_death =
          std::max(0.0, Deliveries(Service::kMorgue) - morgue_before) / deaths_;
      result_.appointments_attempts_per_death =
          std::max(0.0, Deliveries(Service::kAppointments) - appointments_before) / deaths_;
    }
    if (deaths_ > 0 && variant_.storage == Storage::kPostgres) {
      for (const auto& [service, before] : retries_before) {
        const double after = Counter(service, "hospital_db_transaction_retries_total", {});
        if (before >= 0 && after >= 0) {
          result_.db_retries_per_death[ServiceName(service)] = (after - before) / deaths_;
        }
      }
    }
    MeasureDuplicates();
    for (Service service : {Service::kPatients, Service::kMorgue, Service::kAppointments}) {
      result_.busy_refusals[ServiceName(service)] =
          std::max(0.0, Counter(service, "hospital_rpc_refusals_total",
                                {"listener=\"public\"", "reason=\"threads_exhausted\""}));
    }
    return std::move(result_);
  }

 private:
  static constexpr char kAdmitMethod[] = "/hospital.morgue.v1.MorgueService/AdmitDeceased";
  static constexpr char kCancelMethod[] =
      "/hospital.appointments.v1.AppointmentsService/CancelPatientAppointments";

  absl::StatusOr<std::string> ScrapePatients() { return Scrape(Service::kPatients); }
  absl::StatusOr<std::string> Scrape(Service service) {
    return testing_support::ScrapeMetrics(system_.process(service).metrics_port());
  }

  // A counter of `service` summed over the samples matching `labels`, over the process's
  // lifetimes in this run: a process killed by the timeline was scraped just before (Kill),
  // so that its restart does not reset the count. -1 if the process cannot be scraped.
  double Counter(Service service, const std::string& name, const std::vector<std::string>& labels) {
    const absl::StatusOr<std::string> scrape = Scrape(service);
    if (!scrape.ok()) return -1;
    double sum = testing_support::SumSamples(*scrape, name, labels);
    base::MutexLock lock(&scrapes_mutex_);
    for (const std::string& before_kill : scrapes_before_kill_[service]) {
      sum += testing_support::SumSamples(before_kill, name, labels);
    }
    return sum;
  }

  // Where the counter of a pattern's applications to `target` (morgue or appointments) lives:
  // the target's consumer (broker, file drop), the batch job, or the patients service's direct
  // writes; each labels its samples with outcome (applied, duplicate...). Not for the
  // synchronous variants, whose downstreams count no deliveries.
  struct Applications {
    Service process;
    const char* metric;
    std::string of_target;  // The label selecting `target`'s samples.
  };
  Applications ApplicationsTo(Service target) const {
    const std::string name = ServiceName(target);
    switch (variant_.pattern) {
      case Pattern::kAsync:
        return {target, "hospital_events_consumed_total", absl::StrCat("consumer=\"", name, "\"")};
      case Pattern::kFileDrop:
        return {target, "hospital_file_drop_events_total", absl::StrCat("consumer=\"", name, "\"")};
      case Pattern::kSharedDbBatch:
        return {Service::kSyncJob, "hospital_batch_sync_events_total",
                absl::StrCat("target=\"", name, "\"")};
      case Pattern::kSync:
      case Pattern::kDirectDbWrite:
        break;
    }
    return {Service::kPatients, "hospital_batch_sync_events_total",
            absl::StrCat("target=\"", name, "\"")};
  }

  // Every attempt or delivery of a death to `target` (morgue or appointments) so far, repeats
  // included: the patients service's attempts (synchronous), else every application.
  double Deliveries(Service target) {
    if (variant_.pattern == Pattern::kSync) {
      return Counter(
          Service::kPatients, "resilience_attempts_total",
          {absl::StrCat("method=\"", target == Service::kMorgue ? kAdmitMethod : kCancelMethod,
                        "\"")});
    }
    const Applications applications = ApplicationsTo(target);
    return Counter(applications.process, applications.metric, {applications.of_target});
  }

  // Follows every acknowledged death until both of its effects are committed: the morgue's
  // admission, then no scheduled appointment left (EffectReader reads the databases directly).
  // Each round it asks whether either database changed; a death is checked when it is new, and
  // again only after a commit to the database it waits on. Re-reading every pending death each
  // round instead cost the bench several times its healthy CPU during a backlog, taken from the
  // very processes it measures on two shared cores.
  void WatchEffects() {
    const std::unique_ptr<EffectReader> reader = ReadEffectsOf(system_);
    while (!stop_watching_.load()) {
      std::vector<std::pair<std::string, absl::Duration>> arrived;
      {
        base::MutexLock lock(&watch_mutex_);
        arrived.swap(newly_acknowledged_);
      }
      const bool morgue_changed = reader->MorgueChanged();
      const bool appointments_changed = reader->AppointmentsChanged();
      std::vector<std::string> admission_checks;
      for (const auto& [patient_id, acknowledged] : arrived) {
        if (!morgue_changed) admission_checks.push_back(patient_id);
        awaiting_admission_[patient_id] = acknowledged;
      }
      if (morgue_changed) {
        for (const auto& entry : awaiting_admission_) admission_checks.push_back(entry.first);
      }
      std::vector<std::string> admitted_now;
      for (const std::string& patient_id : reader->Admitted(admission_checks)) {
        const auto it = awaiting_admission_.find(patient_id);
        if (it == awaiting_admission_.end()) continue;
        awaiting_appointments_[patient_id] = it->second;
        awaiting_admission_.erase(it);
        admitted_now.push_back(patient_id);
      }
      std::vector<std::string> appointment_checks = admitted_now;
      if (appointments_changed) {
        appointment_checks.clear();
        for (const auto& entry : awaiting_appointments_) appointment_checks.push_back(entry.first);
      }
      for (const std::string& patient_id : reader->NoneScheduled(appointment_checks)) {
        const auto it = awaiting_appointments_.find(patient_id);
        if (it == awaiting_appointments_.end()) continue;
        effects_seen_.push_back({it->second, absl::Now() - start_});
        awaiting_appointments_.erase(it);
      }
      absl::SleepFor(reader->poll_interval());
    }
  }

  // Ends the watcher; deaths whose effects it never saw are recorded as such.
  void StopWatching() {
    stop_watching_.store(true);
    if (watcher_.joinable()) watcher_.join();
    base::MutexLock lock(&watch_mutex_);
    for (const auto& [patient_id, acknowledged] : newly_acknowledged_) {
      awaiting_admission_[patient_id] = acknowledged;
    }
    newly_acknowledged_.clear();
    for (const RunResult::EffectTimes& times : effects_seen_) result_.effects.push_back(times);
    effects_seen_.clear();
    for (const auto* waiting : {&awaiting_admission_, &awaiting_appointments_}) {
      for (const auto& [patient_id, acknowledged] : *waiting) {
        result_.effects.push_back({acknowledged, absl::Seconds(-1)});
      }
    }
    awaiting_admission_.clear();
    awaiting_appointments_.clear();
  }

  // Repeats of a death that a downstream recognised (deliveries) and effects applied more than
  // once, from the counters of whoever applies them.
  void MeasureDuplicates() {
    if (variant_.pattern == Pattern::kSync) {
      result_.duplicate_deliveries =
          std::max(0.0, Counter(Service::kMorgue, "hospital_morgue_admissions_total",
                                {"result=\"already_admitted\""})) +
          std::max(0.0, Counter(Service::kAppointments,
                                "hospital_appointments_patient_cancellations_replayed_total", {}));
      // A repeat carries the workflow id that makes it idempotent: counted above.
      result_.duplicate_effects = -1;
      return;
    }
    result_.duplicate_deliveries = 0;
    result_.duplicate_effects = 0;
    for (Service target : {Service::kMorgue, Service::kAppointments}) {
      const Applications applications = ApplicationsTo(target);
      const auto count = [&](const char* outcome) {
        return std::max(0.0, Counter(applications.process, applications.metric,
                                     {applications.of_target, outcome}));
      };
      result_.duplicate_deliveries += count("outcome=\"duplicate\"");
      // One death per deceased patient, so one application each.
      result_.duplicate_effects +=
          std::max(0.0, count("outcome=\"applied\"") - result_.consistency.deceased);
    }
  }

  // Sends RecordDeath for `patient_id`; `on_done(status, context)` runs when it ends. Deaths
  // that succeed are remembered as acknowledged, for the consistency check.
  template <typename OnDone>
  void RecordDeath(const std::string& patient_id, const char* cause, absl::Time deadline,
                   OnDone on_done) {
    patients_v1::RecordDeathRequest request;
    request.set_patient_id(patient_id);
    request.set_cause(cause);
    *request.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now());
    recorder_.Started();
    CallAsync<patients_v1::RecordDeathResponse>(
        [this](auto&&... args) {
          patients_->async()->RecordDeath(std::forward<decltype(args)>(args)...);
        },
        std::move(request), deadline,
        [this, on_done](const grpc::Status& status, const patients_v1::RecordDeathRequest& sent,
                        const grpc::ClientContext& context) {
          if (status.ok()) {
            base::MutexLock lock(&acknowledged_mutex_);
            acknowledged_.insert(sent.patient_id());
          }
          on_done(status, context);
        });
  }

  // The last patients seeded, all at once, so that the measured load does not include the
  // first calls' cold start; their deaths are checked with the rest.
  void WarmUp() {
    std::vector<CallSample> ignored;
    for (int i = deaths_; i < deaths_ + warmup_deaths_; ++i) {
      RecordDeath(
          ids_[static_cast<std::size_t>(i)], "benchmark warm-up",
          absl::Now() + options_.client_deadline,
          [&](const grpc::Status&, const grpc::ClientContext&) { recorder_.Add(ignored, {}); });
    }
    recorder_.WaitForAll();
  }

  // The warm-up deaths' effects follow their acknowledgement in every pattern but the
  // synchronous ones: wait for them (up to 10 s), so that the load's figures count only its own
  // work.
  void AwaitWarmUpEffects() {
    if (variant_.pattern == Pattern::kSync) return;
    const std::unique_ptr<EffectReader> reader = ReadEffectsOf(system_);
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    for (int i = deaths_; i < deaths_ + warmup_deaths_ && absl::Now() < give_up;) {
      const std::vector<std::string> patient = {ids_[static_cast<std::size_t>(i)]};
      if (!reader->Admitted(patient).empty() && !reader->NoneScheduled(patient).empty()) {
        ++i;
      } else {
        absl::SleepFor(absl::Milliseconds(20));
      }
    }
  }

  // The processes whose CPU the load is charged to: name -> (pid, CPU time so far).
  std::map<std::string, std::pair<pid_t, absl::Duration>> CpuNow() {
    std::map<std::string, std::pair<pid_t, absl::Duration>> now;
    for (Service service : {Service::kPatients, Service::kMorgue, Service::kAppointments}) {
      const pid_t pid = system_.process(service).pid();
      now[ServiceName(service)] = {pid, testing_support::CpuTime(pid)};
    }
    if (testing_support::NatsServer* broker = system_.broker(); broker != nullptr) {
      now[ServiceName(Service::kBroker)] = {broker->pid(), testing_support::CpuTime(broker->pid())};
    }
    if (testing_support::ServiceProcess* job = system_.sync_job(); job != nullptr) {
      now[ServiceName(Service::kSyncJob)] = {job->pid(), testing_support::CpuTime(job->pid())};
    }
    // A PostgreSQL server's work is done by the backends its postmaster forks.
    for (auto [name, server] : {std::pair{"postgres primary", system_.primary()},
                                std::pair{"postgres standby", system_.standby()}}) {
      if (server != nullptr && server->running()) {
        now[name] = {server->pid(), testing_support::CpuTimeWithChildren(server->pid())};
      }
    }
    now["bench"] = {0, testing_support::CpuTime(0)};
    return now;
  }

  absl::Status RunLoad() {
    const auto cpu_before = CpuNow();
    start_ = absl::Now() + absl::Milliseconds(100);
    std::thread deaths([this] { SendDeaths(); });
    std::thread reads([this] { SendReads(); });
    std::thread people([this] { ActAsUsers(); });
    absl::Status timeline_status;
    std::thread timeline([&] { timeline_status = ApplyTimeline(); });
    std::thread sampler([this] { Sample(); });
    deaths.join();
    reads.join();
    people.join();
    timeline.join();
    recorder_.WaitForAll();
    load_end_ = absl::Now();
    load_done_.store(true);
    sampler.join();
    if (deaths_ > 0) {
      for (const auto& [name, after] : CpuNow()) {
        const auto before = cpu_before.find(name);
        if (before == cpu_before.end() || before->second.first != after.first ||
            before->second.second < absl::ZeroDuration() || after.second < absl::ZeroDuration()) {
          continue;
        }
        result_.cpu_ms_per_death[name] =
            absl::ToDoubleMilliseconds(after.second - before->second.second) / deaths_;
      }
    }
    return timeline_status;
  }

  void SendDeaths() {
    for (int i = 0; i < deaths_; ++i) {
      const absl::Duration offset = absl::Seconds(i / scenario_.deaths_per_second);
      SleepUntil(start_ + offset);
      const std::string& patient_id = ids_[static_cast<std::size_t>(i)];
      RecordDeath(patient_id, "benchmark", start_ + offset + options_.client_deadline,
                  [this, offset, patient_id](const grpc::Status& status,
                                             const grpc::ClientContext& context) {
                    if (status.ok()) {
                      base::MutexLock lock(&watch_mutex_);
                      newly_acknowledged_.emplace_back(patient_id, absl::Now() - start_);
                    }
                    const bool rejected_by_breaker =
                        server_kit::ErrorReasonOf(context) == server_kit::kReasonCircuitOpen;
                    recorder_.Add(result_.deaths, {offset, absl::Now() - (start_ + offset),
                                                   status.error_code(), rejected_by_breaker});
                  });
    }
  }

  // Background reads, alternating GetPatient (patients) and ListAppointments (appointments):
  // what a fault does to callers that never record a death.
  void SendReads() {
    auto appointments =
        appointments_v1::AppointmentsService::NewStub(system_.Channel(Service::kAppointments));
    std::mt19937 random(42);
    const int reads =
        static_cast<int>(scenario_.reads_per_second * absl::ToDoubleSeconds(scenario_.duration));
    for (int i = 0; i < reads; ++i) {
      const absl::Duration offset = absl::Seconds(i / scenario_.reads_per_second);
      SleepUntil(start_ + offset);
      const std::string& patient_id =
          ids_[std::uniform_int_distribution<std::size_t>(0, ids_.size() - 1)(random)];
      const absl::Time deadline = start_ + offset + options_.client_deadline;
      recorder_.Started();
      const auto sample = [this, offset](std::vector<CallSample>* into) {
        return [this, offset, into](const grpc::Status& status, const auto&,
                                    const grpc::ClientContext&) {
          recorder_.Add(*into, {offset, absl::Now() - (start_ + offset), status.error_code()});
        };
      };
      if (i % 2 == 0) {
        patients_v1::GetPatientRequest request;
        request.set_patient_id(patient_id);
        CallAsync<patients_v1::Patient>(
            [this](auto&&... args) {
              patients_->async()->GetPatient(std::forward<decltype(args)>(args)...);
            },
            std::move(request), deadline, sample(&result_.reads));
      } else {
        appointments_v1::ListAppointmentsRequest request;
        request.set_patient_id(patient_id);
        CallAsync<appointments_v1::ListAppointmentsResponse>(
            [&](auto&&... args) {
              appointments->async()->ListAppointments(std::forward<decltype(args)>(args)...);
            },
            std::move(request), deadline, sample(&result_.appointment_reads));
      }
    }
  }

  // The people using the system while deaths are recorded, one action at a time, each aimed at
  // the patient whose death was sent a moment ago (so often still in flight): a clerk releases
  // the body, the patient cancels one of their appointments, or books a new one (in turn). What
  // the services acknowledge goes into user_actions_ for the checker; what they refuse is
  // counted, with no rule (refusing is their right while a death is unsettled).
  void ActAsUsers() {
    if (scenario_.user_actions_per_second <= 0 || deaths_ == 0) return;
    auto morgue = morgue_v1::MorgueService::NewStub(system_.Channel(Service::kMorgue));
    auto appointments =
        appointments_v1::AppointmentsService::NewStub(system_.Channel(Service::kAppointments));
    std::mt19937 random(7);
    const bool periodic =
        variant_.pattern == Pattern::kSharedDbBatch || variant_.pattern == Pattern::kFileDrop;
    const int lookback =
        periodic ? static_cast<int>(2.5 * kBatchIntervalSeconds * scenario_.deaths_per_second) : 3;
    const int actions = static_cast<int>(scenario_.user_actions_per_second *
                                         absl::ToDoubleSeconds(scenario_.duration));
    for (int i = 0; i < actions; ++i) {
      const absl::Duration offset = absl::Seconds(i / scenario_.user_actions_per_second);
      SleepUntil(start_ + offset);
      // The death sent 0 to 3 sends before now; for the patterns that move deaths every
      // interval, one sent up to two and a half intervals before (still unsettled, and an
      // admission to release is there for some).
      const int sent =
          static_cast<int>(absl::ToDoubleSeconds(offset) * scenario_.deaths_per_second) -
          std::uniform_int_distribution<int>(0, lookback)(random);
      if (sent < 0 || sent >= deaths_) continue;
      const std::string& patient_id = ids_[static_cast<std::size_t>(sent)];
      ActionOutcome outcome;
      switch (i % 3) {
        case 0:
          outcome = ReleaseBody(*morgue, patient_id, user_actions_);
          break;
        case 1:
          outcome = CancelOwnAppointment(*appointments, patient_id,
                                         absl::StrCat("patient's own reason ", i), user_actions_);
          break;
        default:
          outcome =
              BookAppointment(*appointments, patient_id,
                              absl::Now() + absl::Hours(24 * 30) + absl::Minutes(i), user_actions_);
          break;
      }
      if (outcome == ActionOutcome::kNothingToActOn) continue;
      RunResult::ActionCounts& counts = i % 3 == 0   ? result_.releases
                                        : i % 3 == 1 ? result_.own_cancellations
                                                     : result_.bookings;
      ++(outcome == ActionOutcome::kAcknowledged ? counts.acknowledged : counts.refused);
    }
  }

  absl::Status ApplyTimeline() {
    absl::Status first_error;
    for (const Step& step : scenario_.TimelineFor(variant_)) {
      SleepUntil(start_ + step.at);
      if (step.kind == Step::Kind::kKill && step.service != Service::kBroker &&
          step.service != Service::kDatabase &&
          (step.service != Service::kSyncJob || system_.sync_job() != nullptr)) {
        // Its counters die with it: keep what they said (see Counter).
        if (absl::StatusOr<std::string> scrape = Scrape(step.service); scrape.ok()) {
          base::MutexLock lock(&scrapes_mutex_);
          scrapes_before_kill_[step.service].push_back(*std::move(scrape));
        }
      }
      if (absl::Status applied = ApplyStep(system_, step); !applied.ok() && first_error.ok()) {
        first_error = applied;
      }
    }
    return first_error;
  }

  // Every 100 ms during the load: the patients service's breakers and its owed undo calls.
  void Sample() {
    auto admin = resilience::v1::ResilienceAdmin::NewStub(system_.AdminChannel(Service::kPatients));
    while (!load_done_.load()) {
      if (const absl::StatusOr<std::string> scrape = ScrapePatients(); scrape.ok()) {
        result_.pending_compensations.emplace_back(
            absl::Now() - start_,
            testing_support::SumSamples(*scrape, "hospital_death_compensations_pending", {}));
        if (variant_.UsesOutbox()) SampleBacklog(*scrape);
      }
      resilience::v1::ListCircuitBreakersResponse breakers;
      if (admin->ListCircuitBreakers(CallContext(absl::Milliseconds(500)).get(), {}, &breakers)
              .ok()) {
        for (const auto& breaker : breakers.circuit_breakers()) {
          result_.breakers.push_back(
              {absl::Now() - start_, breaker.target(),
               resilience::v1::CircuitBreakerStatus::State_Name(breaker.state())});
        }
      }
      if (options_.progress) {
        options_.progress(std::min(1.0, absl::ToDoubleSeconds(absl::Now() - start_) /
                                            absl::ToDoubleSeconds(scenario_.duration)));
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
  }

  // Outbox depth plus the larger consumer backlog (each consumer gets every event; the file
  // drop's consumers keep no such gauge: the files waiting are the outbox's published events).
  void SampleBacklog(const std::string& patients_scrape) {
    double consumers = 0;
    if (variant_.pattern == Pattern::kAsync) {
      for (Service service : {Service::kMorgue, Service::kAppointments}) {
        if (const absl::StatusOr<std::string> scrape = Scrape(service); scrape.ok()) {
          consumers = std::max(
              consumers, testing_support::SumSamples(*scrape, "hospital_consumer_pending", {}));
        }
      }
    }
    result_.peak_backlog =
        std::max(result_.peak_backlog,
                 testing_support::SumSamples(patients_scrape, "hospital_outbox_unpublished", {}) +
                     consumers);
  }

  void MeasureBreakersAndMemory() {
    // Each sample stands for the 100 ms until the next one; every sampled target gets an entry.
    for (const BreakerSample& sample : result_.breakers) {
      double& open_seconds = result_.breaker_open_seconds[sample.target];
      if (sample.state == "OPEN" || sample.state == "FORCED_OPEN") open_seconds += 0.1;
    }
    for (Service service : {Service::kPatients, Service::kMorgue, Service::kAppointments}) {
      result_.peak_resident_bytes[ServiceName(service)] =
          testing_support::PeakResidentBytes(system_.process(service).pid());
    }
    if (testing_support::NatsServer* broker = system_.broker(); broker != nullptr) {
      result_.peak_resident_bytes[ServiceName(Service::kBroker)] =
          testing_support::PeakResidentBytes(broker->pid());
    }
    if (testing_support::ServiceProcess* job = system_.sync_job(); job != nullptr) {
      result_.peak_resident_bytes[ServiceName(Service::kSyncJob)] =
          testing_support::PeakResidentBytes(job->pid());
    }
  }

  // Checks consistency until it holds (background compensations may still be running), and
  // how long after the last fault the services came to agree.
  void AwaitConsistency() {
    auto morgue = morgue_v1::MorgueService::NewStub(system_.Channel(Service::kMorgue));
    auto appointments =
        appointments_v1::AppointmentsService::NewStub(system_.Channel(Service::kAppointments));
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    absl::Duration last_fault_end = load_end_ - start_;
    if (const auto windows = scenario_.FaultWindows(); !windows.empty()) {
      last_fault_end = absl::ZeroDuration();
      for (const auto& window : windows) last_fault_end = std::max(last_fault_end, window.second);
    }
    result_.time_to_consistency = absl::Seconds(-1);
    for (bool first_check = true;; first_check = false) {
      result_.consistency =
          CheckConsistency(*patients_, *morgue, *appointments, ids_, acknowledged_, user_actions_);
      const absl::Time checked = absl::Now();
      if (!result_.consistency.incomplete && result_.consistency.violations == 0) {
        const absl::Duration converged =
            first_check ? ConvergedDuringLoad(last_fault_end, checked) : checked - start_;
        result_.time_to_consistency = std::max(absl::ZeroDuration(), converged - last_fault_end);
        return;
      }
      if (checked > give_up) return;
      absl::SleepFor(absl::Milliseconds(100));
    }
  }

  // When the services agreed, if they did by the end of the load: at the first sample that
  // found no owed undo call after the last that found some.
  absl::Duration ConvergedDuringLoad(absl::Duration last_fault_end, absl::Time checked) const {
    absl::Duration converged = last_fault_end;
    bool owed = false;
    for (const auto& [offset, pending] : result_.pending_compensations) {
      if (owed && pending == 0) converged = std::max(converged, offset);
      owed = pending > 0;
    }
    return owed ? checked - start_ : converged;
  }

  const Scenario& scenario_;
  const RunOptions& options_;
  const Variant variant_;
  const std::string dir_;
  System system_;
  RunResult result_;
  int deaths_ = 0;
  int warmup_deaths_ = 0;  // Scenario::warmup_deaths, or the options' default.
  std::vector<std::string> ids_;
  std::unique_ptr<patients_v1::PatientsService::Stub> patients_;
  Recorder recorder_;
  base::Mutex acknowledged_mutex_;
  std::set<std::string> acknowledged_;  // Read after every call has ended.
  UserActions user_actions_;            // Written by ActAsUsers only; read after it ended.
  absl::Time start_;
  absl::Time load_end_;
  std::atomic<bool> load_done_{false};
  // Deaths acknowledged since the watcher last looked: patient id, acknowledged at.
  base::Mutex watch_mutex_;
  std::vector<std::pair<std::string, absl::Duration>> newly_acknowledged_
      ABSL_GUARDED_BY(watch_mutex_);
  // The watcher thread's own (read by StopWatching after joining it): deaths waiting for the
  // admission, deaths admitted and waiting for their appointments to be cancelled (patient id
  // -> acknowledged at), and the effects seen complete.
  std::map<std::string, absl::Duration> awaiting_admission_;
  std::map<std::string, absl::Duration> awaiting_appointments_;
  std::vector<RunResult::EffectTimes> effects_seen_;
  std::atomic<bool> stop_watching_{false};
  std::thread watcher_;
  // Scrapes of processes taken just before the timeline killed them (Counter).
  base::Mutex scrapes_mutex_;
  std::map<Service, std::vector<std::string>> scrapes_before_kill_ ABSL_GUARDED_BY(scrapes_mutex_);
};

}  // namespace

absl::StatusOr<RunResult> RunScenario(const Scenario& scenario, const Variant& variant,
                                      const RunOptions& options) {
  const std::string dir = absl::StrCat(options.work_dir, "/", scenario.name, "-", variant.name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return ScenarioRun(scenario, variant, options, dir).Run();
}

}  // namespace fault_bench
