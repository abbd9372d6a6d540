#include "support/test_database.h"

#include <atomic>
#include <fstream>
#include <sstream>

#include <libpq-fe.h>
#include <sqlite3.h>

#include <cstdlib>

#include <catch2/catch.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "server_kit/open_database.h"

namespace testing_support {

std::string ReadPasswordFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream contents;
  contents << file.rdbuf();
  return std::string(absl::StripAsciiWhitespace(contents.str()));
}

PostgresServer& SharedPostgres() {
  // Destroyed at exit, which stops the server and removes its directory; a test that dies
  // leaves neither (the server dies with its parent, the directory is in $TMPDIR).
  static const std::unique_ptr<PostgresServer> server = [] {
    auto started = std::make_unique<PostgresServer>();
    const absl::Status status = started->Start();
    INFO(status.ToString() << "\n" << started->log());
    REQUIRE(status.ok());
    return started;
  }();
  return *server;
}

DatabaseLocation NewDatabaseLocation(server_kit::Engine engine, const std::string& dir,
                                     const std::string& name) {
  static std::atomic<int> next{0};
  const std::string unique = absl::StrCat(name, "_", next.fetch_add(1));
  if (engine == server_kit::Engine::kSqlite) return {absl::StrCat(dir, "/", unique, ".db"), ""};
  PostgresServer& server = SharedPostgres();
  const absl::Status created = server.CreateDatabase(unique);
  INFO(created.ToString());
  REQUIRE(created.ok());
  return {server.Uri(unique), server.password_file()};
}

absl::StatusOr<std::unique_ptr<server_kit::Database>> TryOpenLocation(
    const DatabaseLocation& location, const server_kit::Schema& schema,
    server_kit::DatabaseOptions options) {
  if (!location.password_file.empty() && options.password.empty()) {
    options.password = ReadPasswordFile(location.password_file);
  }
  return server_kit::OpenDatabase(location.db, schema, options);
}

std::unique_ptr<server_kit::Database> OpenLocation(const DatabaseLocation& location,
                                                   const server_kit::Schema& schema,
                                                   server_kit::DatabaseOptions options) {
  absl::StatusOr<std::unique_ptr<server_kit::Database>> database =
      TryOpenLocation(location, schema, std::move(options));
  INFO(database.status().ToString());
  REQUIRE(database.ok());
  return *std::move(database);
}

TestDatabase::TestDatabase(server_kit::Engine engine, const server_kit::Schema& schema,
                           server_kit::DatabaseOptions options)
    : location_(NewDatabaseLocation(engine, dir_.path(), "test")),
      database_(OpenLocation(location_, schema, std::move(options))) {}

absl::StatusOr<std::unique_ptr<server_kit::Database>> TestDatabase::TryReopen(
    const server_kit::Schema& schema, server_kit::DatabaseOptions options) const {
  return TryOpenLocation(location_, schema, std::move(options));
}

std::unique_ptr<server_kit::Database> TestDatabase::Reopen(
    const server_kit::Schema& schema, server_kit::DatabaseOptions options) const {
  return OpenLocation(location_, schema, std::move(options));
}

int CountRowsOffline(const DatabaseLocation& location, const std::string& table) {
  const std::string sql = absl::StrCat("SELECT count(*) FROM ", table);
  if (!server_kit::IsPostgresLocation(location.db)) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(location.db.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    sqlite3_stmt* statement = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(statement) == SQLITE_ROW);
    const int count = sqlite3_column_int(statement, 0);
    sqlite3_finalize(statement);
    sqlite3_close(db);
    return count;
  }
  const std::string password_text = ReadPasswordFile(location.password_file);
  const char* keywords[] = {"dbname", "password", nullptr};
  const char* values[] = {location.db.c_str(), password_text.c_str(), nullptr};
  PGconn* connection = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  INFO(PQerrorMessage(connection));
  REQUIRE(PQstatus(connection) == CONNECTION_OK);
  PGresult* result = PQexec(connection, sql.c_str());
  INFO(PQresultErrorMessage(result));
  REQUIRE(PQresultStatus(result) == PGRES_TUPLES_OK);
  const int count = std::atoi(PQgetvalue(result, 0, 0));
  PQclear(result);
  PQfinish(connection);
  return count;
}

}  // namespace testing_support
