#include "server_kit/service_main.h"

#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "absl/algorithm/container.h"
#include "absl/cleanup/cleanup.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "base/crash_point.h"
#include "base/status.h"
#include "server_kit/admin_auth.h"
#include "server_kit/caller_authorization.h"
#include "server_kit/fault_injection.h"
#include "server_kit/log.h"
#include "server_kit/open_database.h"
#include "server_kit/postgres.h"
#include "server_kit/rpc_support.h"
#include "server_kit/sqlite.h"
#include "server_kit/tls.h"

ABSL_FLAG(
    std::string, listen, "",
    "gRPC address, host:port; port 0 picks a free port "
    "(default: the service's own, 0.0.0.0:50051 patients, :50052 morgue, :50053 appointments)");
ABSL_FLAG(std::string, metrics_listen, "",
          "Prometheus /metrics address, host:port; \"none\" "
          "disables it (default: 0.0.0.0:9091 patients, :9092 morgue, :9093 appointments)");
ABSL_FLAG(std::string, db, "",
          "Where the service keeps its data: a SQLite file, created if missing (a path, or "
          "sqlite:PATH), or a PostgreSQL 15 database, postgresql://[user@]host[:port][,host2"
          "[:port]...]/dbname[?target_session_attrs=read-write&...] (libpq's URI; no password "
          "in it). Only --death_workflow=sync and async run on PostgreSQL; the shared-disk "
          "patterns need SQLite (default: <service>.db in the working directory)");
ABSL_FLAG(std::string, db_password_file, "",
          "File holding the PostgreSQL password (its contents, without surrounding white "
          "space); without it libpq reads "
          "PGPASSFILE (~/.pgpass by default)");
ABSL_FLAG(int, db_pool_size, 8,
          "PostgreSQL: connections the service keeps open at most (shared by all its calls)");
ABSL_FLAG(absl::Duration, db_statement_timeout, absl::Seconds(10),
          "PostgreSQL: longest a statement (a commit waiting for its synchronous standby "
          "included) may take before the call fails UNAVAILABLE");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "After SIGTERM/SIGINT: how long in-flight calls may run before they are cancelled");
ABSL_FLAG(absl::Duration, health_check_interval, absl::Seconds(1),
          "How often readiness (database reachable) is checked");
ABSL_FLAG(std::string, port_file, "",
          "If set, \"grpc=<port>\\nmetrics=<port>\\n\" is written here once serving");
ABSL_FLAG(std::string, rpc_logging, "errors", "Which RPCs to log: none, errors or all");
ABSL_FLAG(std::string, faults_file, "",
          "JSON fault rules (hospital.faults.v1.FaultSet) to inject from start-up");
ABSL_FLAG(std::string, admin_listen, "",
          "Admin listener (operator RPCs: ResilienceAdmin, FaultInjection), host:port; \"none\" "
          "disables it (default: loopback only, 127.0.0.1:50061 patients, :50062 morgue, "
          ":50063 appointments)");
ABSL_FLAG(std::string, admin_token_file, "",
          "File holding the bearer token that changes through the admin listener must send "
          "(\"authorization: Bearer <token>\"); without it (or --admin_tls_ca) every change is "
          "refused");
ABSL_FLAG(std::string, health_listen, "none",
          "Plaintext listener serving only grpc.health.v1, host:port, for probes that cannot "
          "speak TLS (Kubernetes' gRPC probes); \"none\": health is served on the other "
          "listeners only");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain of this service; with --tls_key, every listener but "
          "--health_listen speaks TLS only, and the service presents it to the services it "
          "calls");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM certificates of the CA that signs the services' certificates; with it the public "
          "listener requires a client certificate it signed (mutual TLS), and the channels to "
          "other services trust it alone");
ABSL_FLAG(absl::Duration, tls_refresh_interval, absl::Minutes(1),
          "How often the TLS files are read again: a renewed certificate is used without a "
          "restart");
ABSL_FLAG(std::string, admin_tls_ca, "",
          "PEM certificates of the operators' CA: on the admin listener (which needs "
          "--tls_cert), a client certificate it signed authorizes changes without the token");
ABSL_FLAG(std::string, authz_policy, "",
          "JSON caller policy (hospital.security.v1.CallerPolicy): which client-certificate "
          "identities may call which methods; needs mutual TLS (--tls_ca)");
ABSL_FLAG(bool, fault_admin, false,
          "Serve hospital.faults.v1.FaultInjection on the admin listener (changes need "
          "--admin_token_file's token)");
ABSL_FLAG(int, max_threads, 100,
          "Most threads the gRPC server may use; calls beyond them fail at once with "
          "RESOURCE_EXHAUSTED instead of piling up (and memory with them) when the service is "
          "overloaded or stalled");
ABSL_FLAG(absl::Duration, overload_pushback, absl::Milliseconds(50),
          "How long a caller refused for lack of threads is asked to wait before it retries "
          "(grpc-retry-pushback-ms, jittered from half to one and a half times this)");
ABSL_FLAG(int, max_request_bytes, 64 * 1024,
          "Largest request message accepted, in bytes; larger ones fail with RESOURCE_EXHAUSTED");
ABSL_FLAG(int, max_concurrent_streams, 1000,
          "Calls one client connection may have open at once (HTTP/2 makes it wait beyond)");
ABSL_FLAG(int, malloc_trim_threshold, 8 << 20,
          "Bytes of free memory glibc may keep at the top of each heap before returning it to "
          "the kernel; 0 keeps glibc's own adaptive threshold");
ABSL_FLAG(std::string, replica_name, "",
          "This process among the service's replicas, for the work they share in the database "
          "(claims on rows): the same across restarts of one replica, different for any two "
          "running at once. Default: the host name and the --listen port (in Kubernetes, the "
          "pod's name); a fresh id per start when the port is 0");
ABSL_FLAG(std::string, sqlite_synchronous, "FULL",
          "SQLite PRAGMA synchronous: FULL (commits survive power loss) or NORMAL (survive a "
          "process crash)");

namespace server_kit {
namespace {

// The storage engine's work, read on each scrape: transactions committed and the units of work
// they carried (SQLite's group commit: the ratio is the mean group size), transactions run again
// after a conflict, and the connection pool (PostgreSQL; SQLite holds its two connections).
class DatabaseMetrics final : public prometheus::Collectable {
 public:
  explicit DatabaseMetrics(const Database& database) : database_(database) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    const StorageStats stats = database_.stats();
    const std::string engine = EngineName(database_.engine());
    const auto family = [&engine](std::string name, std::string help, prometheus::MetricType type,
                                  double value) {
      prometheus::MetricFamily result{std::move(name), std::move(help), type, {}};
      prometheus::ClientMetric metric;
      metric.label.push_back({"engine", engine});
      if (type == prometheus::MetricType::Counter) {
        metric.counter.value = value;
      } else {
        metric.gauge.value = value;
      }
      result.metric.push_back(std::move(metric));
      return result;
    };
    using prometheus::MetricType;
    const auto count = [](std::int64_t value) { return static_cast<double>(value); };
    return {
        family("hospital_db_transactions_total",
               "Write transactions committed (a SQLite group commit counts once).",
               MetricType::Counter, count(stats.commits)),
        family("hospital_db_units_committed_total",
               "Units of work committed; over hospital_db_transactions_total, the mean number "
               "sharing one commit.",
               MetricType::Counter, count(stats.units_committed)),
        family("hospital_db_transaction_retries_total",
               "Units of work run again after a serialization failure or deadlock (PostgreSQL).",
               MetricType::Counter, count(stats.transaction_retries)),
        family("hospital_db_connection_errors_total",
               "Database connections that could not open or were lost.", MetricType::Counter,
               count(stats.connection_failures)),
        family("hospital_db_pool_timeouts_total",
               "Calls refused UNAVAILABLE because no database connection came free in time.",
               MetricType::Counter, count(stats.pool_timeouts)),
        family("hospital_db_pool_size", "Database connections the service may hold.",
               MetricType::Gauge, stats.pool_size),
        family("hospital_db_connections_open", "Database connections open.", MetricType::Gauge,
               stats.connections_open),
        family("hospital_db_connections_in_use", "Database connections running a unit of work.",
               MetricType::Gauge, stats.connections_in_use),
        family("hospital_db_waiting", "Units of work and reads waiting for a connection.",
               MetricType::Gauge, stats.waiting),
    };
  }

 private:
  const Database& database_;
};

std::string Or(const std::string& value, const std::string& fallback) {
  return value.empty() ? fallback : value;
}

int Fail(const std::string& event, const absl::Status& status) {
  Log(LogLevel::kError, event, {{"error", status.ToString()}});
  return 1;
}

// Everything the flags say, checked.
struct ServiceFlags {
  ServerOptions server;
  AdminCredentials admin;
  // For the channels this service opens to others (insecure without --tls_cert).
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials;
  std::optional<CallerPolicy> caller_policy;
  DatabaseOptions database;
  std::string db_path;
  // The database for logs: the SQLite path, or the PostgreSQL URI's hosts, database and user.
  std::string db_description;
  std::string replica_name;
  int malloc_trim_threshold = 0;
};

// --replica_name, or the host name and the --listen port; a fresh id when the port is chosen
// at start (nothing stable to go by).
absl::StatusOr<std::string> ReplicaName(const std::string& listen_address) {
  std::string name = absl::GetFlag(FLAGS_replica_name);
  if (!name.empty()) {
    if (name.size() > 200 || absl::c_any_of(name, [](char c) {
          return absl::ascii_iscntrl(static_cast<unsigned char>(c)) || c == ' ';
        })) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--replica_name: at most 200 characters, no spaces or control characters, got \"",
          absl::CHexEscape(name), "\""));
    }
    return name;
  }
  const std::size_t colon = listen_address.rfind(':');
  const std::string port = colon == std::string::npos ? "" : listen_address.substr(colon + 1);
  if (port.empty() || port == "0") return NewId();
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return NewId();
  return absl::StrCat(host, ":", port);
}

// --tls_*: the listeners' and the channels' credentials; plaintext when no flag is given.
absl::Status ReadTlsFlags(ServiceFlags& flags) {
  TlsFiles files{absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key),
                 absl::GetFlag(FLAGS_tls_ca), absl::GetFlag(FLAGS_tls_refresh_interval)};
  const std::string admin_ca = absl::GetFlag(FLAGS_admin_tls_ca);
  if (files.cert.empty() && files.key.empty()) {
    if (!files.ca.empty() || !admin_ca.empty()) {
      return absl::InvalidArgumentError(
          "--tls_cert: needed with --tls_ca or --admin_tls_ca (a CA alone turns nothing on)");
    }
    flags.channel_credentials = grpc::InsecureChannelCredentials();
    return absl::OkStatus();
  }
  if (files.refresh < absl::Seconds(1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_refresh_interval: must be at least 1s, got ", absl::FormatDuration(files.refresh)));
  }
  ASSIGN_OR_RETURN(
      flags.server.credentials,
      TlsServerCredentialsFrom(
          files, files.ca.empty() ? ClientCertificates::kNone : ClientCertificates::kRequire));
  ASSIGN_OR_RETURN(flags.channel_credentials, TlsChannelCredentialsFrom(files));
  // The admin listener proves itself with the same certificate; operators' certificates come
  // from their own CA, and are asked for but not required, so that the token works too.
  TlsFiles admin_files = files;
  admin_files.ca = admin_ca;
  ASSIGN_OR_RETURN(
      flags.server.admin_credentials,
      TlsServerCredentialsFrom(admin_files, admin_ca.empty() ? ClientCertificates::kNone
                                                             : ClientCertificates::kOptional));
  flags.admin.trust_client_certificates = !admin_ca.empty();
  return absl::OkStatus();
}

// --db and what goes with it: the engine, the PostgreSQL password and pool.
absl::Status ReadDatabaseFlags(const ServiceDefinition& definition, ServiceFlags& flags) {
  DatabaseOptions& database = flags.database;
  database.application_name = definition.name;
  database.synchronous = absl::GetFlag(FLAGS_sqlite_synchronous);
  if (database.synchronous != "FULL" && database.synchronous != "NORMAL") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--sqlite_synchronous: must be FULL or NORMAL, got \"", database.synchronous, "\""));
  }
  const bool postgres = IsPostgresLocation(flags.db_path);
  if (postgres) {
    if (definition.migrations.postgres.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--db: ", definition.name, " keeps its data in SQLite only (a shared-disk pattern)"));
    }
    absl::StatusOr<std::string> description = DescribePostgresUri(flags.db_path);
    if (!description.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--db: ", description.status().message()));
    }
    flags.db_description = *std::move(description);
  } else {
    flags.db_description = SqlitePath(flags.db_path);
  }
  const std::string password_file = absl::GetFlag(FLAGS_db_password_file);
  if (!password_file.empty()) {
    if (!postgres) {
      return absl::InvalidArgumentError(
          "--db_password_file: only for a PostgreSQL --db (postgresql://...)");
    }
    ASSIGN_OR_RETURN(database.password, ReadTokenFile(password_file, "--db_password_file"));
  }
  database.pool_size = absl::GetFlag(FLAGS_db_pool_size);
  if (database.pool_size < 1 || database.pool_size > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("--db_pool_size: must be 1 to 1000, got ", database.pool_size));
  }
  database.statement_timeout = absl::GetFlag(FLAGS_db_statement_timeout);
  if (database.statement_timeout < absl::Milliseconds(100)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--db_statement_timeout: must be at least 100ms, got ",
                     absl::FormatDuration(database.statement_timeout)));
  }
  return absl::OkStatus();
}

absl::StatusOr<ServiceFlags> ReadFlags(const ServiceDefinition& definition) {
  ServiceFlags flags;
  ServerOptions& options = flags.server;
  options.service_name = definition.name;
  options.listen_address = Or(absl::GetFlag(FLAGS_listen), definition.default_listen);
  options.admin_address = Or(absl::GetFlag(FLAGS_admin_listen), definition.default_admin_listen);
  if (options.admin_address == "none") options.admin_address.clear();
  options.health_address = absl::GetFlag(FLAGS_health_listen);
  if (options.health_address == "none") options.health_address.clear();
  if (const std::string path = absl::GetFlag(FLAGS_admin_token_file); !path.empty()) {
    ASSIGN_OR_RETURN(flags.admin.token, ReadTokenFile(path, "--admin_token_file"));
  }
  RETURN_IF_ERROR(ReadTlsFlags(flags));
  if (const std::string path = absl::GetFlag(FLAGS_authz_policy); !path.empty()) {
    if (absl::GetFlag(FLAGS_tls_ca).empty()) {
      return absl::InvalidArgumentError(
          "--authz_policy: callers are known by their client certificates, which only mutual "
          "TLS asks for: give --tls_cert, --tls_key and --tls_ca too");
    }
    absl::StatusOr<CallerPolicy> policy = CallerPolicy::LoadFile(path);
    if (!policy.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--authz_policy: ", policy.status().message()));
    }
    flags.caller_policy = *std::move(policy);
  }
  if (absl::GetFlag(FLAGS_fault_admin) && options.admin_address.empty()) {
    return absl::InvalidArgumentError(
        "--fault_admin: FaultInjection is served on the admin listener, which --admin_listen "
        "turned off");
  }
  ASSIGN_OR_RETURN(flags.replica_name, ReplicaName(options.listen_address));
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
  options.overload_pushback = absl::GetFlag(FLAGS_overload_pushback);
  if (options.overload_pushback < absl::Milliseconds(1) ||
      options.overload_pushback > absl::Seconds(60)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--overload_pushback: must be 1ms to 60s, got ",
                     absl::FormatDuration(options.overload_pushback)));
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
  flags.db_path = Or(absl::GetFlag(FLAGS_db), definition.default_db);
  RETURN_IF_ERROR(ReadDatabaseFlags(definition, flags));
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
absl::StatusOr<FaultInjector*> SetUpFaults(ServiceContext& context,
                                           const AdminAuthenticator& authenticator) {
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
    context.server.RegisterAdminService(
        context.Keep(std::make_unique<FaultInjectionService>(*injector, authenticator)));
  }
  return injector;
}

// Builds and starts the server, serves until SIGTERM or SIGINT, and drains. Returns the event
// and error that stopped start-up, if any.
std::optional<std::pair<std::string, absl::Status>> RunUntilSignal(
    const ServiceFlags& flags, Database& database,
    const std::function<absl::Status(ServiceContext&)>& setup) {
  // Destroyed last: what `kept` holds updates metrics until it goes (a NATS client's
  // callbacks run while it closes).
  std::shared_ptr<prometheus::Registry> registry;
  std::vector<std::shared_ptr<void>> kept;  // Outlives the server, which refers to its contents.
  // After the server, the kept objects go in reverse order: what was kept later may use what was
  // kept before it (a module's runtime, the environment whose timers it uses).
  absl::Cleanup release_kept_in_reverse = [&kept] {
    while (!kept.empty()) kept.pop_back();
  };
  Server server(flags.server);
  registry = server.shared_metrics();
  ServiceContext context(database, server, kept);
  context.admin = context.Keep(std::make_unique<AdminAuthenticator>(flags.admin, server.metrics()));
  context.channel_credentials = flags.channel_credentials;
  context.replica_name = flags.replica_name;
  // First, so that a refused caller is not delayed or faulted before being refused.
  if (flags.caller_policy) {
    server.AddInterceptorFactory(
        std::make_unique<CallerAuthorizationFactory>(*flags.caller_policy, server.metrics()));
  }
  if (flags.admin.token.empty() && !flags.admin.trust_client_certificates &&
      !flags.server.admin_address.empty()) {
    Log(LogLevel::kWarning, "admin_changes_refused",
        {{"reason",
          "no --admin_token_file or --admin_tls_ca: the admin listener serves "
          "listings only"}});
  }
  const absl::StatusOr<FaultInjector*> injector = SetUpFaults(context, *context.admin);
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
       {"admin_listen", flags->server.admin_address},
       {"metrics_listen", flags->server.metrics_address},
       {"db", flags->db_description}});
  if (!base::ArmedCrashPoint().empty()) {
    // A test's doing; in production this line would explain a process that kills itself.
    Log(LogLevel::kWarning, "crash_point_armed", {{"HOSPITAL_CRASH_AT", base::ArmedCrashPoint()}});
  }
  absl::StatusOr<std::unique_ptr<Database>> database =
      OpenDatabase(flags->db_path, definition.migrations, flags->database);
  if (!database.ok()) {
    return Fail("database_open_failed",
                absl::Status(database.status().code(),
                             absl::StrCat("--db: ", database.status().message())));
  }
  const auto failure = RunUntilSignal(*flags, **database, setup);
  database->reset();
  if (failure) return Fail(failure->first, failure->second);
  Log(LogLevel::kInfo, "database_closed", {{"db", flags->db_description}});
  return 0;
}

}  // namespace server_kit
