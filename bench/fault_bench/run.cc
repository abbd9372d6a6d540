#include "fault_bench/run.h"

#include <csignal>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <thread>

#include <google/protobuf/util/json_util.h>
#include <grpcpp/create_channel.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/grpc_status.h"
#include "base/sync.h"
#include "echo/v1/echo.grpc.pb.h"
#include "hospital/faults/v1/faults.grpc.pb.h"
#include "resilience/v1/admin.grpc.pb.h"
#include "server_kit/rpc_support.h"
#include "testing_support/service_process.h"

namespace fault_bench {
namespace {

namespace patients_v1 = hospital::patients::v1;
namespace morgue_v1 = hospital::morgue::v1;
namespace appointments_v1 = hospital::appointments::v1;
namespace faults_v1 = hospital::faults::v1;

constexpr char kToken[] = "bench-token";

std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return context;
}

std::shared_ptr<grpc::Channel> Channel(const testing_support::ServiceProcess& process) {
  return grpc::CreateChannel(process.address(), grpc::InsecureChannelCredentials());
}

// The three services of one run.
class System {
 public:
  System(const RunOptions& options, const Variant& variant, const std::string& dir) {
    std::ofstream(dir + "/token") << kToken;
    auto make = [&](const std::string& name, std::vector<std::string> flags) {
      flags.push_back(absl::StrCat("--db=", dir, "/", name, ".db"));
      flags.push_back("--fault_admin");
      flags.push_back(absl::StrCat("--fault_admin_token_file=", dir, "/token"));
      flags.push_back("--rpc_logging=none");
      flags.insert(flags.end(), options.service_flags.begin(), options.service_flags.end());
      flags.push_back("--shutdown_grace=2s");
      return std::make_unique<testing_support::ServiceProcess>(
          absl::StrCat(options.binary_dir, "/", name, "/", name), std::move(flags),
          absl::StrCat(dir, "/", name, ".log"), absl::StrCat(dir, "/", name, ".ports"),
          /*with_metrics=*/true);
    };
    morgue_ = make("morgue", {});
    appointments_ = make("appointments", {});
    variant_policy_ = variant.policy_file;
    make_patients_ = [make, this] {
      return make("patients", {absl::StrCat("--resilience_policy=", variant_policy_),
                               absl::StrCat("--morgue_address=", morgue_->address()),
                               absl::StrCat("--appointments_address=", appointments_->address()),
                               "--reconcile_interval=0.2s"});
    };
  }

  absl::Status Start() {
    if (auto s = morgue_->Start(); !s.ok()) return s;
    if (auto s = appointments_->Start(); !s.ok()) return s;
    patients_ = make_patients_();
    return patients_->Start();
  }

  void Stop() {
    for (auto* process : {patients_.get(), morgue_.get(), appointments_.get()}) {
      if (process != nullptr) process->SendTerminate();
    }
    for (auto* process : {patients_.get(), morgue_.get(), appointments_.get()}) {
      if (process != nullptr) process->WaitForExit();
    }
  }

  testing_support::ServiceProcess& process(Service service) {
    switch (service) {
      case Service::kPatients:
        return *patients_;
      case Service::kMorgue:
        return *morgue_;
      case Service::kAppointments:
        return *appointments_;
    }
    return *patients_;
  }

 private:
  std::string variant_policy_;
  std::unique_ptr<testing_support::ServiceProcess> morgue_;
  std::unique_ptr<testing_support::ServiceProcess> appointments_;
  std::unique_ptr<testing_support::ServiceProcess> patients_;
  std::function<std::unique_ptr<testing_support::ServiceProcess>()> make_patients_;
};

absl::Status Seed(System& system, int patients, int appointments_each,
                  std::vector<std::string>& ids) {
  auto patient_stub =
      patients_v1::PatientsService::NewStub(Channel(system.process(Service::kPatients)));
  auto appointment_stub = appointments_v1::AppointmentsService::NewStub(
      Channel(system.process(Service::kAppointments)));
  for (int i = 0; i < patients; ++i) {
    patients_v1::CreatePatientRequest create;
    create.set_patient_id(absl::StrCat("patient-", i));
    create.set_given_name("Bench");
    create.set_family_name(absl::StrCat("Patient ", i));
    create.set_date_of_birth("1950-01-01");
    patients_v1::Patient patient;
    grpc::Status status =
        patient_stub->CreatePatient(Context(absl::Seconds(10)).get(), create, &patient);
    if (!status.ok()) return base::FromGrpcStatus(status);
    ids.push_back(create.patient_id());
    for (int k = 0; k < appointments_each; ++k) {
      appointments_v1::ScheduleAppointmentRequest book;
      book.set_patient_id(create.patient_id());
      *book.mutable_scheduled_time() =
          server_kit::ToProtoTime(absl::Now() + absl::Hours(24 * (k + 1)));
      book.set_clinician("Dr. Bench");
      appointments_v1::Appointment appointment;
      status = appointment_stub->ScheduleAppointment(Context(absl::Seconds(10)).get(), book,
                                                     &appointment);
      if (!status.ok()) return base::FromGrpcStatus(status);
    }
  }
  return absl::OkStatus();
}

// Records calls made by callback threads.
class Recorder {
 public:
  void Add(std::vector<CallSample>& into, CallSample sample) {
    base::MutexLock lock(&mutex_);
    into.push_back(sample);
    --outstanding_;
    done_.SignalAll();
  }
  void Started() {
    base::MutexLock lock(&mutex_);
    ++outstanding_;
  }
  void WaitForAll() {
    base::MutexLock lock(&mutex_);
    while (outstanding_ > 0) done_.Wait(&mutex_);
  }

 private:
  base::Mutex mutex_;
  base::CondVar done_;
  int outstanding_ ABSL_GUARDED_BY(mutex_) = 0;
};

// Sends one unary call asynchronously. `method` forwards its four arguments to a stub's async
// method; `done(status, request)` runs on a gRPC thread when the call ends.
template <typename Response, typename Request, typename Method, typename Done>
void CallAsync(Method method, Request request, absl::Time deadline, Done done) {
  struct Call {
    grpc::ClientContext context;
    Request request;
    Response response;
  };
  auto* call = new Call;
  call->context.set_deadline(absl::ToChronoTime(deadline));
  call->request = std::move(request);
  method(&call->context, &call->request, &call->response, [call, done](grpc::Status status) {
    done(status, call->request);
    delete call;
  });
}

void SleepUntil(absl::Time when) {
  const absl::Duration wait = when - absl::Now();
  if (wait > absl::ZeroDuration()) absl::SleepFor(wait);
}

absl::Status ApplyStep(System& system, const Step& step) {
  testing_support::ServiceProcess& process = system.process(step.service);
  switch (step.kind) {
    case Step::Kind::kFreeze:
      process.Freeze();
      return absl::OkStatus();
    case Step::Kind::kUnfreeze:
      process.Unfreeze();
      return absl::OkStatus();
    case Step::Kind::kKill:
      process.Kill();
      return absl::OkStatus();
    case Step::Kind::kRestart:
      return process.Start();
    case Step::Kind::kSetFault:
    case Step::Kind::kClearFaults:
      break;
  }
  auto admin = faults_v1::FaultInjection::NewStub(Channel(process));
  auto context = Context(absl::Seconds(5));
  context->AddMetadata("authorization", absl::StrCat("Bearer ", kToken));
  if (step.kind == Step::Kind::kClearFaults) {
    faults_v1::ClearFaultsResponse cleared;
    return base::FromGrpcStatus(admin->ClearFaults(context.get(), {}, &cleared));
  }
  faults_v1::SetFaultRequest request;
  const auto parsed =
      google::protobuf::util::JsonStringToMessage(step.fault_json, request.mutable_fault());
  if (!parsed.ok()) return absl::InvalidArgumentError(parsed.message().as_string());
  faults_v1::Fault stored;
  return base::FromGrpcStatus(admin->SetFault(context.get(), request, &stored));
}

double AttemptsOf(const std::string& scrape, const std::string& method) {
  return testing_support::SumSamples(scrape, "resilience_attempts_total",
                                     {absl::StrCat("method=\"", method, "\"")});
}

}  // namespace

double Quantile(std::vector<double> values, double quantile) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1,
                         static_cast<std::size_t>(quantile * static_cast<double>(values.size())))];
}

absl::StatusOr<RunResult> RunScenario(const Scenario& scenario, const Variant& variant,
                                      const RunOptions& options) {
  RunResult result;
  result.scenario = scenario.name;
  result.variant = variant.name;
  result.duration = scenario.duration;
  const std::string dir = absl::StrCat(options.work_dir, "/", scenario.name, "-", variant.name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  System system(options, variant, dir);
  if (absl::Status started = system.Start(); !started.ok()) return started;
  auto stop = [&system] { system.Stop(); };
  struct Stopper {
    std::function<void()> stop;
    ~Stopper() { stop(); }
  } stopper{stop};

  const int deaths =
      static_cast<int>(scenario.deaths_per_second * absl::ToDoubleSeconds(scenario.duration));
  std::vector<std::string> ids;
  if (absl::Status seeded =
          Seed(system, deaths + options.warmup_deaths, options.appointments_per_patient, ids);
      !seeded.ok()) {
    return seeded;
  }
  auto patients =
      patients_v1::PatientsService::NewStub(Channel(system.process(Service::kPatients)));
  auto admin =
      resilience::v1::ResilienceAdmin::NewStub(Channel(system.process(Service::kPatients)));

  Recorder recorder;
  base::Mutex acknowledged_mutex;
  std::set<std::string> acknowledged;
  const auto record_death = [&](const std::string& patient_id, const char* cause,
                                absl::Time deadline, auto on_done) {
    patients_v1::RecordDeathRequest request;
    request.set_patient_id(patient_id);
    request.set_cause(cause);
    *request.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now());
    recorder.Started();
    CallAsync<patients_v1::RecordDeathResponse>(
        [&](auto&&... args) {
          patients->async()->RecordDeath(std::forward<decltype(args)>(args)...);
        },
        std::move(request), deadline,
        [&, on_done](const grpc::Status& status, const patients_v1::RecordDeathRequest& sent) {
          if (status.ok()) {
            base::MutexLock lock(&acknowledged_mutex);
            acknowledged.insert(sent.patient_id());
          }
          on_done(status);
        });
  };
  {
    // The warm-up: the last patients seeded, all at once; their deaths are checked with the rest.
    std::vector<CallSample> ignored;
    for (int i = deaths; i < deaths + options.warmup_deaths; ++i) {
      record_death(ids[static_cast<std::size_t>(i)], "benchmark warm-up",
                   absl::Now() + options.client_deadline,
                   [&](const grpc::Status&) { recorder.Add(ignored, {}); });
    }
    recorder.WaitForAll();
  }
  const absl::StatusOr<std::string> before =
      testing_support::ScrapeMetrics(system.process(Service::kPatients).metrics_port());
  const absl::Time start = absl::Now() + absl::Milliseconds(100);
  std::atomic<bool> load_done{false};

  std::thread deaths_thread([&] {
    for (int i = 0; i < deaths; ++i) {
      const absl::Duration offset = absl::Seconds(i / scenario.deaths_per_second);
      SleepUntil(start + offset);
      record_death(ids[static_cast<std::size_t>(i)], "benchmark",
                   start + offset + options.client_deadline,
                   [&, offset](const grpc::Status& status) {
                     const bool rejected_by_breaker =
                         status.error_message().find("(circuit breaker open)") != std::string::npos;
                     recorder.Add(result.deaths, {offset, absl::Now() - (start + offset),
                                                  status.error_code(), rejected_by_breaker});
                   });
    }
  });
  // Background reads, alternating GetPatient (patients) and ListAppointments (appointments):
  // what a fault does to callers that never record a death.
  auto appointments_reader = appointments_v1::AppointmentsService::NewStub(
      Channel(system.process(Service::kAppointments)));
  std::thread reads_thread([&] {
    std::mt19937 random(42);
    const int reads =
        static_cast<int>(scenario.reads_per_second * absl::ToDoubleSeconds(scenario.duration));
    for (int i = 0; i < reads; ++i) {
      const absl::Duration offset = absl::Seconds(i / scenario.reads_per_second);
      SleepUntil(start + offset);
      const std::string& patient_id =
          ids[std::uniform_int_distribution<std::size_t>(0, ids.size() - 1)(random)];
      const absl::Time deadline = start + offset + options.client_deadline;
      recorder.Started();
      const auto sample = [&, offset](std::vector<CallSample>* into) {
        return [&, offset, into](const grpc::Status& status, const auto&) {
          recorder.Add(*into, {offset, absl::Now() - (start + offset), status.error_code()});
        };
      };
      if (i % 2 == 0) {
        patients_v1::GetPatientRequest request;
        request.set_patient_id(patient_id);
        CallAsync<patients_v1::Patient>(
            [&](auto&&... args) {
              patients->async()->GetPatient(std::forward<decltype(args)>(args)...);
            },
            std::move(request), deadline, sample(&result.reads));
      } else {
        appointments_v1::ListAppointmentsRequest request;
        request.set_patient_id(patient_id);
        CallAsync<appointments_v1::ListAppointmentsResponse>(
            [&](auto&&... args) {
              appointments_reader->async()->ListAppointments(std::forward<decltype(args)>(args)...);
            },
            std::move(request), deadline, sample(&result.appointment_reads));
      }
    }
  });
  absl::Status timeline_status;
  std::thread timeline_thread([&] {
    for (const Step& step : scenario.timeline) {
      SleepUntil(start + step.at);
      if (absl::Status applied = ApplyStep(system, step); !applied.ok() && timeline_status.ok()) {
        timeline_status = applied;
      }
    }
  });
  std::thread sampler([&] {
    while (!load_done.load()) {
      resilience::v1::ListCircuitBreakersResponse breakers;
      if (const absl::StatusOr<std::string> scrape =
              testing_support::ScrapeMetrics(system.process(Service::kPatients).metrics_port());
          scrape.ok()) {
        result.pending_compensations.emplace_back(
            absl::Now() - start,
            testing_support::SumSamples(*scrape, "hospital_death_compensations_pending", {}));
      }
      if (admin->ListCircuitBreakers(Context(absl::Milliseconds(500)).get(), {}, &breakers).ok()) {
        for (const auto& breaker : breakers.circuit_breakers()) {
          result.breakers.push_back(
              {absl::Now() - start, breaker.target(),
               resilience::v1::CircuitBreakerStatus::State_Name(breaker.state())});
        }
      }
      if (options.progress) {
        options.progress(std::min(1.0, absl::ToDoubleSeconds(absl::Now() - start) /
                                           absl::ToDoubleSeconds(scenario.duration)));
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
  });

  deaths_thread.join();
  reads_thread.join();
  timeline_thread.join();
  recorder.WaitForAll();
  const absl::Time load_end = absl::Now();
  load_done.store(true);
  sampler.join();
  if (!timeline_status.ok()) return timeline_status;

  // Amplification, from the patients service's own attempt counters.
  const absl::StatusOr<std::string> after =
      testing_support::ScrapeMetrics(system.process(Service::kPatients).metrics_port());
  if (before.ok() && after.ok() && deaths > 0) {
    const std::string admit = "/hospital.morgue.v1.MorgueService/AdmitDeceased";
    const std::string cancel =
        "/hospital.appointments.v1.AppointmentsService/CancelPatientAppointments";
    result.morgue_attempts_per_death =
        (AttemptsOf(*after, admit) - AttemptsOf(*before, admit)) / deaths;
    result.appointments_attempts_per_death =
        (AttemptsOf(*after, cancel) - AttemptsOf(*before, cancel)) / deaths;
  }
  // Each sample stands for the 100 ms until the next one; every sampled target gets an entry.
  for (const BreakerSample& sample : result.breakers) {
    double& open_seconds = result.breaker_open_seconds[sample.target];
    if (sample.state == "OPEN" || sample.state == "FORCED_OPEN") open_seconds += 0.1;
  }
  for (Service service : {Service::kPatients, Service::kMorgue, Service::kAppointments}) {
    result.peak_resident_bytes[ServiceName(service)] =
        testing_support::PeakResidentBytes(system.process(service).pid());
  }

  // Consistency: checked until it holds (background compensations may still be running).
  auto morgue = morgue_v1::MorgueService::NewStub(Channel(system.process(Service::kMorgue)));
  auto appointments = appointments_v1::AppointmentsService::NewStub(
      Channel(system.process(Service::kAppointments)));
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  absl::Duration last_fault_end = load_end - start;
  if (const auto windows = scenario.FaultWindows(); !windows.empty()) {
    last_fault_end = absl::ZeroDuration();
    for (const auto& window : windows) last_fault_end = std::max(last_fault_end, window.second);
  }
  result.time_to_consistency = absl::Seconds(-1);
  for (bool first_check = true;; first_check = false) {
    result.consistency = CheckConsistency(*patients, *morgue, *appointments, ids, acknowledged);
    const absl::Time checked = absl::Now();
    if (!result.consistency.incomplete && result.consistency.violations == 0) {
      absl::Duration converged = checked - start;
      if (first_check) {
        // Agreement was reached during the load: at the first sample that found no owed undo
        // call after the last that found some.
        converged = last_fault_end;
        bool owed = false;
        for (const auto& [offset, pending] : result.pending_compensations) {
          if (owed && pending == 0) converged = std::max(converged, offset);
          owed = pending > 0;
        }
        if (owed) converged = checked - start;
      }
      result.time_to_consistency = std::max(absl::ZeroDuration(), converged - last_fault_end);
      break;
    }
    if (checked > give_up) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return result;
}

namespace {

CapacityStep Summarise(double rate, const std::vector<CallSample>& samples) {
  CapacityStep step;
  step.rate = rate;
  step.calls = static_cast<int>(samples.size());
  for (const CallSample& sample : samples) step.ok += sample.code == grpc::StatusCode::OK ? 1 : 0;
  std::vector<double> latencies;
  for (const CallSample& sample : samples) {
    latencies.push_back(absl::ToDoubleMilliseconds(sample.latency));
  }
  step.p99_ms = Quantile(std::move(latencies), 0.99);
  return step;
}

}  // namespace

absl::StatusOr<CapacityStep> EchoStep(const RunOptions& options, const std::string& echo_binary,
                                      const EchoShape& shape, double rate,
                                      absl::Duration duration) {
  const std::string dir = absl::StrCat(options.work_dir, "/echo-", shape.api, "-", shape.fan_out,
                                       "-", static_cast<int>(rate));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  // Leaves first, so that the front server's channels find them listening.
  std::vector<std::unique_ptr<testing_support::ServiceProcess>> leaves;
  std::vector<std::string> leaf_addresses;
  for (int i = 0; i < shape.fan_out; ++i) {
    const std::string name = absl::StrCat(dir, "/leaf-", i);
    leaves.push_back(std::make_unique<testing_support::ServiceProcess>(
        echo_binary, std::vector<std::string>{"--api=callback"}, name + ".log", name + ".ports"));
    if (absl::Status started = leaves.back()->Start(); !started.ok()) return started;
    leaf_addresses.push_back(leaves.back()->address());
  }
  std::vector<std::string> flags = {absl::StrCat("--api=", shape.api)};
  if (!leaf_addresses.empty()) {
    flags.push_back(absl::StrCat("--fan_out_to=", absl::StrJoin(leaf_addresses, ",")));
  }
  testing_support::ServiceProcess echo(echo_binary, flags, dir + "/echo.log", dir + "/echo.ports");
  if (absl::Status started = echo.Start(); !started.ok()) return started;
  auto stub = echo::v1::EchoService::NewStub(Channel(echo));
  Recorder recorder;
  std::vector<CallSample> samples;
  const int calls = static_cast<int>(rate * absl::ToDoubleSeconds(duration));
  const absl::Time start = absl::Now() + absl::Milliseconds(100);
  for (int i = 0; i < calls; ++i) {
    const absl::Duration offset = absl::Seconds(i / rate);
    SleepUntil(start + offset);
    echo::v1::EchoRequest request;
    request.set_message("ping");
    recorder.Started();
    CallAsync<echo::v1::EchoResponse>(
        [&](auto&&... args) { stub->async()->Echo(std::forward<decltype(args)>(args)...); },
        std::move(request), start + offset + options.client_deadline,
        [&, offset](const grpc::Status& status, const echo::v1::EchoRequest&) {
          recorder.Add(samples, {offset, absl::Now() - (start + offset), status.error_code()});
        });
  }
  recorder.WaitForAll();
  echo.Terminate();
  for (auto& leaf : leaves) leaf->Terminate();
  return Summarise(rate, samples);
}

absl::StatusOr<CapacityStep> DeathStep(const RunOptions& options, const Variant& variant,
                                       double rate, absl::Duration duration) {
  Scenario scenario{absl::StrCat("capacity-", static_cast<int>(rate)), "", duration, rate, 0, {}};
  absl::StatusOr<RunResult> run = RunScenario(scenario, variant, options);
  if (!run.ok()) return run.status();
  CapacityStep step = Summarise(rate, run->deaths);
  for (const auto& [service, bytes] : run->peak_resident_bytes) {
    step.peak_rss_mib = std::max(step.peak_rss_mib, static_cast<double>(bytes) / 1048576.0);
  }
  return step;
}

}  // namespace fault_bench
