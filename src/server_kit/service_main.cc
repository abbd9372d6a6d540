#include "server_kit/service_main.h"

#include <malloc.h>

#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "base/status.h"
#include "server_kit/fault_injection.h"
#include "server_kit/log.h"

ABSL_FLAG(
    std::string, listen, "",
    "gRPC address, host:port; port 0 picks a free port "
    "(default: the service's own, 0.0.0.0:50051 patients, :50052 morgue, :50053 appointments)");
ABSL_FLAG(std::string, metrics_listen, "",
          "Prometheus /metrics address, host:port; \"none\" "
          "disables it (default: 0.0.0.0:9091 patients, :9092 morgue, :9093 appointments)");
ABSL_FLAG(std::string, db, "",
          "SQLite database file, created if missing "
          "(default: <service>.db in the working directory)");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "After SIGTERM/SIGINT: how long in-flight calls may run before they are cancelled");
ABSL_FLAG(absl::Duration, health_check_interval, absl::Seconds(1),
          "How often readiness (database reachable) is checked");
ABSL_FLAG(std::string, port_file, "",
          "If set, \"grpc=<port>\\nmetrics=<port>\\n\" is written here once serving");
ABSL_FLAG(std::string, rpc_logging, "errors", "Which RPCs to log: none, errors or all");
ABSL_FLAG(std::string, faults_file, "",
          "JSON fault rules (hospital.faults.v1.FaultSet) to inject from start-up");
ABSL_FLAG(bool, fault_admin, false,
          "Serve hospital.faults.v1.FaultInjection, guarded by the token in "
          "--fault_admin_token_file");
ABSL_FLAG(std::string, fault_admin_token_file, "",
          "File holding the bearer token that FaultInjection calls must send");
ABSL_FLAG(int, max_threads, 100,
          "Most threads the gRPC server may use; calls beyond them fail at once with "
          "RESOURCE_EXHAUSTED instead of piling up (and memory with them) when the service is "
          "overloaded or stalled");
ABSL_FLAG(int, max_request_bytes, 64 * 1024,
          "Largest request message accepted, in bytes; larger ones fail with RESOURCE_EXHAUSTED");
ABSL_FLAG(int, max_concurrent_streams, 1000,
          "Calls one client connection may have open at once (HTTP/2 makes it wait beyond)");
ABSL_FLAG(int, malloc_trim_threshold, 8 << 20,
          "Bytes of free memory glibc may keep at the top of each heap before returning it to "
          "the kernel; 0 keeps glibc's own adaptive threshold");
ABSL_FLAG(std::string, sqlite_synchronous, "FULL",
          "SQLite PRAGMA synchronous: FULL (commits survive power loss) or NORMAL (survive a "
          "process crash)");

namespace server_kit {
namespace {

// The database's group commit, read on each scrape: transactions committed and the units of work
// they carried (the ratio is the mean group size; near 1 when idle, larger under load).
class DatabaseMetrics final : public prometheus::Collectable {
 public:
  explicit DatabaseMetrics(const Database& database) : database_(database) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    const auto counter = [](std::string name, std::string help, std::int64_t value) {
      prometheus::MetricFamily family{
          std::move(name), std::move(help), prometheus::MetricType::Counter, {}};
      prometheus::ClientMetric metric;
      metric.counter.value = static_cast<double>(value);
      family.metric.push_back(std::move(metric));
      return family;
    };
    return {counter("hospital_sqlite_transactions_total",
                    "SQLite write transactions committed (a group commit counts once).",
                    database_.commits()),
            counter("hospital_sqlite_units_committed_total",
                    "Units of work committed; over hospital_sqlite_transactions_total, the mean "
                    "number sharing one commit.",
                    database_.units_committed())};
  }

 private:
  const Database& database_;
};

std::string Or(const std::string& value, const std::string& fallback) {
  return value.empty() ? fallback : value;
}

// The token in `path`, without surrounding white space; it must not be empty.
absl::StatusOr<std::string> ReadToken(const std::string& path) {
  if (path.empty()) {
    return absl::InvalidArgumentError(
        "--fault_admin_token_file: required with --fault_admin (a file holding the token)");
  }
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  const std::string token(absl::StripAsciiWhitespace(text.str()));
  if (!file || token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--fault_admin_token_file: cannot read a token from \"", path, "\""));
  }
  return token;
}

int Fail(const std::string& event, const absl::Status& status) {
  Log(LogLevel::kError, event, {{"error", status.ToString()}});
  return 1;
}

// Everything the flags say, checked.
struct ServiceFlags {
  ServerOptions server;
  DatabaseOptions database;
  std::string db_path;
  int malloc_trim_threshold = 0;
};

absl::StatusOr<ServiceFlags> ReadFlags(const ServiceDefinition& definition) {
  ServiceFlags flags;
  ServerOptions& options = flags.server;
  options.service_name = definition.name;
  options.listen_address = Or(absl::GetFlag(FLAGS_listen), definition.default_listen);
  options.metrics_address =
      Or(absl::GetFlag(FLAGS_metrics_listen), definition.default_metrics_listen);
  if (options.metrics_address == "none") options.metrics_address.clear();
  options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  options.health_check_interval = absl::GetFlag(FLAGS_health_check_interval);
  options.port_file = absl::GetFlag(FLAGS_port_file);
  if (!ParseRpcLogging(absl::GetFlag(FLAGS_rpc_logging), options.rpc_logging)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--rpc_logging: must be none, errors or all, got \"",
                     absl::GetFlag(FLAGS_rpc_logging), "\""));
  }
  options.max_threads = absl::GetFlag(FLAGS_max_threads);
  if (options.max_threads < ServerOptions::kMinThreads) {
    return absl::InvalidArgumentError(absl::StrCat("--max_threads: must be at least ",
                                                   ServerOptions::kMinThreads, ", got ",
                                                   options.max_threads));
  }
  options.max_request_bytes = absl::GetFlag(FLAGS_max_request_bytes);
  if (options.max_request_bytes < 1024) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_request_bytes: must be at least 1024, got ", options.max_request_bytes));
  }
  options.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  if (options.max_concurrent_streams < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_concurrent_streams: must be at least 1, got ", options.max_concurrent_streams));
  }
  flags.database.synchronous = absl::GetFlag(FLAGS_sqlite_synchronous);
  if (flags.database.synchronous != "FULL" && flags.database.synchronous != "NORMAL") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--sqlite_synchronous: must be FULL or NORMAL, got \"", flags.database.synchronous, "\""));
  }
  flags.db_path = Or(absl::GetFlag(FLAGS_db), definition.default_db);
  flags.malloc_trim_threshold = absl::GetFlag(FLAGS_malloc_trim_threshold);
  if (flags.malloc_trim_threshold < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--malloc_trim_threshold: must be 0 or more, got ", flags.malloc_trim_threshold));
  }
  return flags;
}

// glibc gives the free memory at the top of a heap back to the kernel once more than 128 KiB
// (adapted upwards over time) is free there. Under load each gRPC thread's heap crosses that
// line many times a second, and each give-back is an madvise whose TLB flush interrupts every
// core: 13 % of the patients service's CPU at 880 deaths/s on a 2-core VM (perf). A fixed
// 8 MiB threshold cut its CPU per death by about a fifth and halved RecordDeath's p99 at 800
// deaths/s, with the same peak RSS (fault_bench baseline, async, two runs each side by side).
// Set before any thread runs. Only glibc's allocator takes it: under a sanitizer's (or any
// other) allocator mallopt refuses, and the service runs on without it, saying so.
void TuneMalloc(int trim_threshold) {
  if (trim_threshold == 0) return;
  if (mallopt(M_TRIM_THRESHOLD, trim_threshold) != 1) {
    Log(LogLevel::kWarning, "malloc_trim_threshold_ignored",
        {{"reason", "the allocator does not take mallopt (not glibc's malloc?)"}});
  }
}

// Fault injection for every call the server serves, with its rules from --faults_file and, with
// --fault_admin, the FaultInjection service.
absl::StatusOr<FaultInjector*> SetUpFaults(ServiceContext& context) {
  FaultInjector* injector = context.Keep(std::make_unique<FaultInjector>(
      base::Environment{&base::SystemClock(), nullptr, &base::SystemRandom()},
      context.server.metrics()));
  if (const std::string path = absl::GetFlag(FLAGS_faults_file); !path.empty()) {
    if (absl::Status status = LoadFaultsFile(path, *injector); !status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--faults_file: ", status.message()));
    }
  }
  context.server.AddInterceptorFactory(std::make_unique<FaultInterceptorFactory>(*injector));
  if (absl::GetFlag(FLAGS_fault_admin)) {
    ASSIGN_OR_RETURN(std::string token, ReadToken(absl::GetFlag(FLAGS_fault_admin_token_file)));
    FaultInjectionService* admin =
        context.Keep(std::make_unique<FaultInjectionService>(*injector, std::move(token)));
    context.server.RegisterService(admin, faults_v1::FaultInjection::service_full_name());
  }
  return injector;
}

// Builds and starts the server, serves until SIGTERM or SIGINT, and drains. Returns the event
// and error that stopped start-up, if any.
std::optional<std::pair<std::string, absl::Status>> RunUntilSignal(
    const ServiceFlags& flags, Database& database,
    const std::function<absl::Status(ServiceContext&)>& setup) {
  std::vector<std::shared_ptr<void>> kept;  // Outlives the server, which refers to its contents.
  Server server(flags.server);
  ServiceContext context(database, server, kept);
  const absl::StatusOr<FaultInjector*> injector = SetUpFaults(context);
  if (!injector.ok()) return std::make_pair("bad_flag", injector.status());
  context.faults = *injector;
  server.AddCollectable(std::make_shared<DatabaseMetrics>(database));
  if (absl::Status status = setup(context); !status.ok()) {
    return std::make_pair("setup_failed", status);
  }
  server.SetReadinessCheck([&database, injector = *injector]() -> absl::Status {
    if (injector->NotServing()) return absl::UnavailableError("fault injected: not_serving");
    return database.CheckWritable();
  });
  const absl::Status started = server.Start();
  if (started.ok()) {
    const std::string signal = WaitForTerminationSignal();
    Log(LogLevel::kInfo, "signal", {{"signal", signal}});
    (*injector)->ReleaseWaits();
    server.Shutdown();
  }
  for (auto& hook : context.on_shutdown) hook();
  if (!started.ok()) return std::make_pair("start_failed", started);
  return std::nullopt;
}

}  // namespace

int ServiceMain(int argc, char** argv, const ServiceDefinition& definition,
                const std::function<absl::Status(ServiceContext&)>& setup) {
  // Before any thread exists, so that every thread inherits the blocked mask.
  BlockTerminationSignals();
  absl::SetProgramUsageMessage(definition.usage);
  absl::ParseCommandLine(argc, argv);
  InitLog(definition.name);
  // Debian's Abseil is built with assertions on, which turns on absl::Mutex's deadlock
  // detection: a lock-order graph updated on every lock that gRPC takes (about 1 % of a
  // service's CPU under load). Our own locks are checked by TSan and -Wthread-safety instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  const absl::StatusOr<ServiceFlags> flags = ReadFlags(definition);
  if (!flags.ok()) return Fail("bad_flag", flags.status());
  TuneMalloc(flags->malloc_trim_threshold);
  Log(LogLevel::kInfo, "starting",
      {{"listen", flags->server.listen_address},
       {"metrics_listen", flags->server.metrics_address},
       {"db", flags->db_path}});
  absl::StatusOr<std::unique_ptr<Database>> database =
      Database::Open(flags->db_path, definition.migrations, flags->database);
  if (!database.ok()) return Fail("database_open_failed", database.status());
  const auto failure = RunUntilSignal(*flags, **database, setup);
  database->reset();
  if (failure) return Fail(failure->first, failure->second);
  Log(LogLevel::kInfo, "database_closed", {{"db", flags->db_path}});
  return 0;
}

}  // namespace server_kit
