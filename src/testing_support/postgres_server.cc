#include "testing_support/postgres_server.h"

#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/status.h"

namespace testing_support {
namespace {

// A fresh password, so that a cluster never accepts a guessed one.
std::string NewPassword() {
  std::random_device device;
  std::string password;
  for (int i = 0; i < 4; ++i) absl::StrAppendFormat(&password, "%08x", device());
  return password;
}

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// Gives `path` to `run_as` (when set): the server's user must own what it writes.
absl::Status GiveTo(const std::string& path, const std::optional<RunAs>& run_as) {
  if (run_as.has_value() && ::chown(path.c_str(), run_as->uid, run_as->gid) != 0) {
    return absl::InternalError(absl::StrCat("cannot give ", path, " to uid ", run_as->uid));
  }
  return absl::OkStatus();
}

}  // namespace

PostgresServer::PostgresServer(std::string extra_config)
    : extra_config_(std::move(extra_config)), port_(FreePort()) {
  if (::geteuid() == 0) {
    const passwd* user = ::getpwnam("postgres");
    if (user == nullptr) {
      setup_ = absl::FailedPreconditionError(
          "PostgreSQL refuses to run as root and there is no user postgres to run it as "
          "(install postgresql-15, which creates it, or run the test as another user)");
      return;
    }
    run_as_ = RunAs{user->pw_uid, user->pw_gid};
  }
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/hospital-postgres-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) {
    setup_ = absl::InternalError(absl::StrCat("cannot create ", pattern));
    return;
  }
  directory_ = pattern;
  const std::string password_path = password_file();
  std::ofstream(password_path) << NewPassword() << "\n";
  ::chmod(password_path.c_str(), 0600);
  setup_ = GiveTo(directory_, run_as_);
  if (setup_.ok()) setup_ = GiveTo(password_path, run_as_);
}

PostgresServer::~PostgresServer() {
  Kill();
  if (!directory_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(directory_, ignored);
  }
}

std::string PostgresServer::password_file() const { return directory_ + "/password"; }

std::string PostgresServer::Uri(const std::string& database) const {
  return absl::StrCat("postgresql://", kUser, "@127.0.0.1:", port_, "/", database);
}

std::string PostgresServer::SocketConnection(const std::string& database) const {
  return absl::StrCat("host=", directory_, " port=", port_, " user=", kUser, " dbname=", database,
                      " connect_timeout=5");
}

std::string PostgresServer::log() const { return ReadFile(directory_ + "/postgres.log"); }

absl::Status PostgresServer::InitializeCluster() {
  const std::string log_path = directory_ + "/initdb.log";
  absl::StatusOr<pid_t> initdb =
      Spawn({absl::StrCat(kPostgresBinaries, "/initdb"), "-D", directory_ + "/data", "-U", kUser,
             "--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile=" + password_file(),
             "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"},
            log_path, {}, run_as_);
  if (!initdb.ok()) return initdb.status();
  int status = 0;
  while (::waitpid(*initdb, &status, 0) < 0) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("initdb failed:\n", ReadFile(log_path)));
  }
  // Test settings: the socket beside the data, loopback only, and the caller's lines last.
  std::ofstream config(directory_ + "/data/postgresql.conf", std::ios::app);
  config << "\nlisten_addresses = '127.0.0.1'\nport = " << port_ << "\nunix_socket_directories = '"
         << directory_ << "'\nmax_connections = 200\n"
         << extra_config_ << "\n";
  initialized_ = true;
  return absl::OkStatus();
}

absl::Status PostgresServer::Start(absl::Duration timeout) {
  if (!setup_.ok()) return setup_;
  if (!initialized_) {
    if (absl::Status initialized = InitializeCluster(); !initialized.ok()) return initialized;
  }
  const std::size_t log_before = log().size();
  absl::StatusOr<pid_t> spawned =
      Spawn({absl::StrCat(kPostgresBinaries, "/postgres"), "-D", directory_ + "/data"},
            directory_ + "/postgres.log", {}, run_as_);
  if (!spawned.ok()) return spawned.status();
  pid_ = *spawned;
  const std::string connection = SocketConnection("postgres");
  const absl::Time give_up = absl::Now() + timeout;
  while (absl::Now() < give_up) {
    if (PQping(connection.c_str()) == PQPING_OK) return absl::OkStatus();
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(
          absl::StrCat("postgres exited during start-up:\n", log().substr(log_before)));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("postgres did not accept connections:\n", log().substr(log_before)));
}

absl::Status PostgresServer::CreateDatabase(const std::string& name) {
  PGconn* connection = PQconnectdb(SocketConnection("postgres").c_str());
  if (PQstatus(connection) != CONNECTION_OK) {
    const std::string error = PQerrorMessage(connection);
    PQfinish(connection);
    return absl::UnavailableError(absl::StrCat("cannot connect to create ", name, ": ", error));
  }
  char* quoted = PQescapeIdentifier(connection, name.c_str(), name.size());
  PGresult* result = PQexec(connection, absl::StrCat("CREATE DATABASE ", quoted).c_str());
  PQfreemem(quoted);
  const bool created = PQresultStatus(result) == PGRES_COMMAND_OK;
  const std::string error = PQresultErrorMessage(result);
  PQclear(result);
  PQfinish(connection);
  if (!created) return absl::InternalError(absl::StrCat("CREATE DATABASE ", name, ": ", error));
  return absl::OkStatus();
}

absl::Status PostgresServer::Execute(const std::string& sql, const std::string& database) {
  PGconn* connection = PQconnectdb(SocketConnection(database).c_str());
  if (PQstatus(connection) != CONNECTION_OK) {
    const std::string error = PQerrorMessage(connection);
    PQfinish(connection);
    return absl::UnavailableError(absl::StrCat("cannot connect: ", error));
  }
  PGresult* result = PQexec(connection, sql.c_str());
  const ExecStatusType status = PQresultStatus(result);
  const std::string error = PQresultErrorMessage(result);
  PQclear(result);
  PQfinish(connection);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return absl::InternalError(absl::StrCat(sql, ": ", error));
  }
  return absl::OkStatus();
}

absl::Status PostgresServer::MakeStandbyOf(const PostgresServer& primary, const std::string& name) {
  if (!setup_.ok()) return setup_;
  if (initialized_) return absl::FailedPreconditionError("the cluster already exists");
  std::filesystem::copy_file(primary.password_file(), password_file(),
                             std::filesystem::copy_options::overwrite_existing);
  RETURN_IF_ERROR(GiveTo(password_file(), run_as_));
  // -R writes standby.signal and primary_conninfo (over the primary's Unix socket, where the
  // replication connection is trusted).
  const std::string log_path = directory_ + "/basebackup.log";
  absl::StatusOr<pid_t> backup =
      Spawn({absl::StrCat(kPostgresBinaries, "/pg_basebackup"), "-h", primary.socket_directory(),
             "-p", absl::StrCat(primary.port()), "-U", kUser, "-D", directory_ + "/data", "-X",
             "stream", "-R", "-c", "fast", "--no-sync"},
            log_path, {}, run_as_);
  if (!backup.ok()) return backup.status();
  int status = 0;
  while (::waitpid(*backup, &status, 0) < 0) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("pg_basebackup failed:\n", ReadFile(log_path)));
  }
  // The copied configuration is the primary's: this server's own port and socket win (later
  // lines do), and cluster_name is the name the primary knows it by.
  std::ofstream config(directory_ + "/data/postgresql.conf", std::ios::app);
  config << "\nport = " << port_ << "\nunix_socket_directories = '" << directory_
         << "'\ncluster_name = '" << name << "'\nhot_standby = on\n";
  initialized_ = true;
  return absl::OkStatus();
}

namespace {

// Polls `query` (one row, one column) over `connection` until it returns `expected`.
absl::Status WaitForValue(const std::string& connection, const std::string& query,
                          const std::string& expected, absl::Duration timeout) {
  const absl::Time give_up = absl::Now() + timeout;
  std::string last;
  while (absl::Now() < give_up) {
    PGconn* db = PQconnectdb(connection.c_str());
    if (PQstatus(db) == CONNECTION_OK) {
      PGresult* result = PQexec(db, query.c_str());
      if (PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) > 0) {
        last = PQgetvalue(result, 0, 0);
      }
      PQclear(result);
    }
    PQfinish(db);
    if (last == expected) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(
      absl::StrCat(query, " gave \"", last, "\", not \"", expected, "\""));
}

}  // namespace

absl::Status PostgresServer::RequireSynchronousStandby(const std::string& name,
                                                       absl::Duration timeout) {
  RETURN_IF_ERROR(
      Execute(absl::StrCat("ALTER SYSTEM SET synchronous_standby_names = '", name, "'")));
  RETURN_IF_ERROR(Execute("SELECT pg_reload_conf()"));
  return WaitForValue(SocketConnection("postgres"),
                      absl::StrCat("SELECT sync_state FROM pg_stat_replication WHERE "
                                   "application_name = '",
                                   name, "'"),
                      "sync", timeout);
}

absl::Status PostgresServer::Promote(absl::Duration timeout) {
  RETURN_IF_ERROR(Execute("SELECT pg_promote(wait => false)"));
  return WaitForValue(SocketConnection("postgres"), "SELECT pg_is_in_recovery()", "f", timeout);
}

void PostgresServer::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

void PostgresServer::Terminate() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGCONT);
  ::kill(pid_, SIGTERM);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

void PostgresServer::Freeze() {
  if (pid_ > 0) ::kill(pid_, SIGSTOP);
}

void PostgresServer::Unfreeze() {
  if (pid_ > 0) ::kill(pid_, SIGCONT);
}

}  // namespace testing_support
