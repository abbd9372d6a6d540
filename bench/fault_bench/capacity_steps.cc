#include "fault_bench/capacity_steps.h"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <vector>

#include <grpcpp/create_channel.h>
#include <sqlite3.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/status.h"
#include "echo/v1/echo.grpc.pb.h"
#include "fault_bench/load.h"
#include "fault_bench/summary.h"
#include "fault_bench/system.h"
#include "hospital/patients/v1/events.pb.h"
#include "server_kit/rpc_support.h"
#include "testing_support/nats_server.h"
#include "testing_support/postgres_server.h"
#include "testing_support/service_process.h"

namespace fault_bench {
namespace {

namespace patients_v1 = hospital::patients::v1;

std::shared_ptr<grpc::Channel> Channel(const testing_support::ServiceProcess& process) {
  return grpc::CreateChannel(process.address(), grpc::InsecureChannelCredentials());
}

// `events` PatientDied events as RecordDeath would append them (for patients that exist
// nowhere: the consumers are stopped while the relay drains them): event id, patient id,
// payload.
struct DrainEvent {
  std::string event_id;
  std::string patient_id;
  std::string payload;
};
std::vector<DrainEvent> DrainEvents(int events, absl::Time now) {
  std::vector<DrainEvent> made;
  for (int i = 0; i < events; ++i) {
    patients_v1::PatientDied died;
    died.set_event_id(absl::StrCat("drain-", i));
    died.set_patient_id(absl::StrCat("drain-patient-", i));
    *died.mutable_time_of_death() = server_kit::ToProtoTime(now);
    died.set_cause("benchmark");
    *died.mutable_record_time() = server_kit::ToProtoTime(now);
    made.push_back({died.event_id(), died.patient_id(), died.SerializeAsString()});
  }
  return made;
}

constexpr char kOutboxColumns[] =
    "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, event_type, subject, payload, "
    "create_time) VALUES ";
constexpr char kOutboxConstants[] =
    "'patient', %s, 'hospital.patients.v1.PatientDied', 'hospital.patients.v1.patient_died'";

// Appends `events` to the outbox of the patients database at `path`, in one transaction.
absl::Status FillSqliteOutbox(const std::string& path, int events) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return absl::InternalError(absl::StrCat("cannot open ", path));
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* insert = nullptr;
  sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
  const std::string sql =
      absl::StrCat(kOutboxColumns, "(?1, ", absl::StrFormat(kOutboxConstants, "?2"), ", ?3, ?4)");
  sqlite3_prepare_v2(db, sql.c_str(), -1, &insert, nullptr);
  const absl::Time now = absl::Now();
  int failed = 0;
  for (const DrainEvent& event : DrainEvents(events, now)) {
    sqlite3_bind_text(insert, 1, event.event_id.data(), static_cast<int>(event.event_id.size()),
                      SQLITE_TRANSIENT);
    sqlite3_bind_text(insert, 2, event.patient_id.data(), static_cast<int>(event.patient_id.size()),
                      SQLITE_TRANSIENT);
    sqlite3_bind_blob(insert, 3, event.payload.data(), static_cast<int>(event.payload.size()),
                      SQLITE_TRANSIENT);
    sqlite3_bind_int64(insert, 4, absl::ToUnixMicros(now));
    failed += sqlite3_step(insert) == SQLITE_DONE ? 0 : 1;
    sqlite3_reset(insert);
  }
  sqlite3_finalize(insert);
  const bool committed = sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK;
  sqlite3_close(db);
  if (failed > 0 || !committed) return absl::InternalError("could not fill the outbox");
  return absl::OkStatus();
}

// The same on the PostgreSQL primary's patients database: one INSERT of every row (ids are
// plain ASCII; the payload goes as hex).
absl::Status FillPostgresOutbox(testing_support::PostgresServer& primary, int events) {
  const absl::Time now = absl::Now();
  std::string sql = kOutboxColumns;
  bool first = true;
  for (const DrainEvent& event : DrainEvents(events, now)) {
    absl::StrAppend(&sql, first ? "" : ",", "('", event.event_id, "', ",
                    absl::StrFormat(kOutboxConstants, absl::StrCat("'", event.patient_id, "'")),
                    ", '\\x", absl::BytesToHexString(event.payload), "'::bytea, ",
                    absl::ToUnixMicros(now), ")");
    first = false;
  }
  return primary.Execute(sql, "patients");
}

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
        echo_binary, std::vector<std::string>{"--api=callback"}, name + ".log", name + ".ports",
        /*with_metrics=*/false, /*with_admin=*/false));
    if (absl::Status started = leaves.back()->Start(); !started.ok()) return started;
    leaf_addresses.push_back(leaves.back()->address());
  }
  std::vector<std::string> flags = {absl::StrCat("--api=", shape.api)};
  if (!leaf_addresses.empty()) {
    flags.push_back(absl::StrCat("--fan_out_to=", absl::StrJoin(leaf_addresses, ",")));
  }
  testing_support::ServiceProcess echo(echo_binary, flags, dir + "/echo.log", dir + "/echo.ports",
                                       /*with_metrics=*/false, /*with_admin=*/false);
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
        [&, offset](const grpc::Status& status, const echo::v1::EchoRequest&,
                    const grpc::ClientContext&) {
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
  scenario.user_actions_per_second = 0;  // Capacity is RecordDeath's alone.
  absl::StatusOr<RunResult> run = RunScenario(scenario, variant, options);
  if (!run.ok()) return run.status();
  CapacityStep step = Summarise(rate, run->deaths);
  step.peak_rss_mib = PeakResidentMiB(*run);
  step.broker_rss_mib = BrokerResidentMiB(*run);
  if (!run->cpu_ms_per_death.empty()) {
    double under_test = 0;
    double bench = 0;
    for (const auto& [process, ms] : run->cpu_ms_per_death) {
      (process == "bench" ? bench : under_test) += ms;
      if (process != "bench") step.cpu_ms_by_process[process] = ms;
    }
    step.cpu_ms_per_call = under_test;
    step.bench_cpu_ms_per_call = bench;
  }
  step.db_retries_per_call = run->db_retries_per_death;
  absl::Duration last_visible = absl::ZeroDuration();
  for (const RunResult::EffectTimes& times : run->effects) {
    if (times.visible < absl::ZeroDuration()) {
      step.drained_after_s = std::numeric_limits<double>::infinity();
      return step;
    }
    last_visible = std::max(last_visible, times.visible);
  }
  step.drained_after_s = std::max(0.0, absl::ToDoubleSeconds(last_visible - duration));
  return step;
}

absl::StatusOr<RelayDrain> MeasureRelayDrain(const RunOptions& options, const Variant& variant,
                                             int events) {
  const std::string dir = absl::StrCat(options.work_dir, "/relay-drain-", variant.name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  System system(options, variant, dir);
  RETURN_IF_ERROR(system.Start());
  testing_support::NatsServer* broker = system.broker();
  if (broker == nullptr) return absl::InvalidArgumentError("relay drain: not an async variant");
  system.process(Service::kMorgue).Kill();
  system.process(Service::kAppointments).Kill();
  broker->Kill();
  RETURN_IF_ERROR(system.primary() != nullptr
                      ? FillPostgresOutbox(*system.primary(), events)
                      : FillSqliteOutbox(system.SqlitePath(Service::kPatients), events));
  const int metrics_port = system.process(Service::kPatients).metrics_port();
  auto unpublished = [&]() -> double {
    absl::StatusOr<std::string> scrape = testing_support::ScrapeMetrics(metrics_port);
    return scrape.ok() ? testing_support::SumSamples(*scrape, "hospital_outbox_unpublished", {})
                       : -1;
  };
  // The relay's gauges follow its passes, which keep failing while the broker is down.
  const absl::Time filled_by = absl::Now() + absl::Seconds(30);
  while (unpublished() < events && absl::Now() < filled_by) absl::SleepFor(absl::Milliseconds(20));
  RETURN_IF_ERROR(broker->Start());
  const absl::Time started = absl::Now();
  absl::Time first = absl::InfiniteFuture();
  const absl::Time give_up = started + absl::Seconds(120);
  while (absl::Now() < give_up) {
    const double left = unpublished();
    if (left >= 0 && left < events && first == absl::InfiniteFuture()) first = absl::Now();
    if (left == 0) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  const absl::Time empty = absl::Now();
  if (empty >= give_up) return absl::DeadlineExceededError("relay drain: not drained in 120 s");
  RelayDrain drain;
  drain.events = events;
  drain.seconds_to_first = absl::ToDoubleSeconds(first - started);
  drain.seconds_to_empty = absl::ToDoubleSeconds(empty - first);
  drain.events_per_second = events / std::max(1e-3, drain.seconds_to_empty);
  drain.broker_rss_mib =
      static_cast<double>(testing_support::PeakResidentBytes(broker->pid())) / 1048576.0;
  system.Stop();
  return drain;
}

}  // namespace fault_bench
