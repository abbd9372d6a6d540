// The test support's PostgreSQL server (testing_support/postgres_server.h), which the storage
// tests of both engines stand on: it must really run as an unprivileged user, demand the
// password over TCP, keep what was committed across a kill -9, and leave nothing behind.
#include "testing_support/postgres_server.h"

#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include <catch2/catch.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace {

using testing_support::PostgresServer;

// A connection that closes itself; null when it failed (`error` says why).
struct Connection {
  explicit Connection(const std::string& conninfo) : conn(PQconnectdb(conninfo.c_str())) {
    if (PQstatus(conn) != CONNECTION_OK) error = PQerrorMessage(conn);
  }
  ~Connection() { PQfinish(conn); }
  bool ok() const { return error.empty(); }
  // The first column of the first row of `sql`, or the error.
  std::string Value(const std::string& sql) {
    PGresult* result = PQexec(conn, sql.c_str());
    std::string value = PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) > 0
                            ? PQgetvalue(result, 0, 0)
                            : absl::StrCat("error: ", PQresultErrorMessage(result));
    PQclear(result);
    return value;
  }
  bool Run(const std::string& sql) {
    PGresult* result = PQexec(conn, sql.c_str());
    const bool ran = PQresultStatus(result) == PGRES_COMMAND_OK;
    INFO(PQresultErrorMessage(result));
    PQclear(result);
    return ran;
  }
  PGconn* conn;
  std::string error;
};

std::string Password(const PostgresServer& server) {
  std::ifstream file(server.password_file());
  std::string password;
  std::getline(file, password);
  return password;
}

// The real user id of process `pid`, from /proc.
int UidOf(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  for (std::string line; std::getline(status, line);) {
    if (absl::StartsWith(line, "Uid:")) return std::stoi(line.substr(4));
  }
  return -1;
}

TEST_CASE("the PostgreSQL server runs unprivileged and demands the password over TCP",
          "[postgres]") {
  PostgresServer server;
  const absl::Status started = server.Start();
  INFO(started.ToString());
  REQUIRE(started.ok());
  REQUIRE(server.CreateDatabase("patients").ok());
  // As root, the server runs as the postgres user; otherwise as the test's own.
  const passwd* postgres = ::getpwnam("postgres");
  const int expected = ::geteuid() == 0 && postgres != nullptr ? static_cast<int>(postgres->pw_uid)
                                                               : static_cast<int>(::geteuid());
  CHECK(UidOf(server.pid()) == expected);
  CHECK(UidOf(server.pid()) != 0);
  {
    Connection with_password(absl::StrCat(server.Uri("patients"), "?password=", Password(server)));
    INFO(with_password.error);
    REQUIRE(with_password.ok());
    CHECK(with_password.Value("SELECT current_user") == PostgresServer::kUser);
    CHECK(with_password.Value("SELECT current_database()") == "patients");
  }
  {
    Connection wrong(absl::StrCat(server.Uri("patients"), "?password=not-it"));
    CHECK_FALSE(wrong.ok());
    CHECK_THAT(wrong.error, Catch::Contains("password authentication failed"));
  }
  Connection missing(absl::StrCat(server.Uri("no_such_database"), "?password=", Password(server)));
  CHECK_FALSE(missing.ok());
  CHECK_THAT(missing.error, Catch::Contains("does not exist"));
}

TEST_CASE("killed with SIGKILL and started again, it keeps what was committed", "[postgres]") {
  PostgresServer server;
  REQUIRE(server.Start().ok());
  REQUIRE(server.CreateDatabase("morgue").ok());
  {
    Connection connection(server.SocketConnection("morgue"));
    REQUIRE(connection.ok());
    REQUIRE(connection.Run("CREATE TABLE admissions (patient_id TEXT PRIMARY KEY)"));
    REQUIRE(connection.Run("INSERT INTO admissions VALUES ('p-1')"));
  }
  const int port = server.port();
  server.Kill();
  CHECK_FALSE(server.running());
  const absl::Status restarted = server.Start();
  INFO(restarted.ToString() << "\n" << server.log());
  REQUIRE(restarted.ok());
  CHECK(server.port() == port);
  Connection connection(server.SocketConnection("morgue"));
  REQUIRE(connection.ok());
  CHECK(connection.Value("SELECT count(*) FROM admissions") == "1");
}

TEST_CASE("a PostgreSQL server leaves no process and no directory behind", "[postgres]") {
  std::string directory;
  pid_t pid = -1;
  {
    PostgresServer server;
    REQUIRE(server.Start().ok());
    directory = server.directory();
    pid = server.pid();
    CHECK(std::filesystem::exists(directory + "/data/PG_VERSION"));
  }
  CHECK_FALSE(std::filesystem::exists(directory));
  CHECK(::kill(pid, 0) != 0);  // Reaped: no such process.
}

}  // namespace
