// Databases on either engine for tests: one test body runs against SQLite and against a real
// PostgreSQL 15 server.
//
//   TEMPLATE_TEST_CASE("admits once", "[morgue]", SqliteEngine, PostgresEngine) {
//     TestDatabase database(TestType::kEngine, morgue::Migrations());
//     MorgueRepository repository(*database);
//     ...
//   }
//
// The PostgreSQL server is started on first use and shared by the test process (each ctest
// entry is a process of its own); every TestDatabase gets a new database on it.
#ifndef HOSPITAL_TEST_SUPPORT_TEST_DATABASE_H_
#define HOSPITAL_TEST_SUPPORT_TEST_DATABASE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server_kit/database.h"
#include "testing_support/postgres_server.h"
#include "testing_support/service_process.h"

namespace testing_support {

struct SqliteEngine {
  static constexpr server_kit::Engine kEngine = server_kit::Engine::kSqlite;
};
struct PostgresEngine {
  static constexpr server_kit::Engine kEngine = server_kit::Engine::kPostgres;
};

// The PostgreSQL server of this test process, started on first use (REQUIREs it); it stops
// when the process exits.
PostgresServer& SharedPostgres();

// Where a fresh database of `engine` is, as a service's flags name it.
struct DatabaseLocation {
  std::string db;             // --db: a file in `dir`, or a new database's URI
  std::string password_file;  // --db_password_file (PostgreSQL), else empty
};
// `name` names the file or the database (a fresh one on each call: a counter is appended).
DatabaseLocation NewDatabaseLocation(server_kit::Engine engine, const std::string& dir,
                                     const std::string& name);

// A database opened with `schema` in a fresh location; REQUIREs that it opens.
class TestDatabase final {
 public:
  TestDatabase(server_kit::Engine engine, const server_kit::Schema& schema,
               server_kit::DatabaseOptions options = {});
  server_kit::Database& operator*() { return *database_; }
  server_kit::Database* operator->() { return database_.get(); }
  server_kit::Database& get() { return *database_; }
  const DatabaseLocation& location() const { return location_; }
  // Opens the same database again (another process's view, or after a restart); REQUIREs it.
  std::unique_ptr<server_kit::Database> Reopen(const server_kit::Schema& schema,
                                               server_kit::DatabaseOptions options = {}) const;
  // The same, returning the error.
  absl::StatusOr<std::unique_ptr<server_kit::Database>> TryReopen(
      const server_kit::Schema& schema, server_kit::DatabaseOptions options = {}) const;

 private:
  TempDir dir_;
  DatabaseLocation location_;
  std::unique_ptr<server_kit::Database> database_;
};

// Opens `location` with `schema` and `options` (the password read from its file); REQUIREs it.
std::unique_ptr<server_kit::Database> OpenLocation(const DatabaseLocation& location,
                                                   const server_kit::Schema& schema,
                                                   server_kit::DatabaseOptions options = {});
// The same, returning the error.
absl::StatusOr<std::unique_ptr<server_kit::Database>> TryOpenLocation(
    const DatabaseLocation& location, const server_kit::Schema& schema,
    server_kit::DatabaseOptions options = {});

// The password in a password file (its contents without surrounding white space).
std::string ReadPasswordFile(const std::string& path);

// Rows in `table` of the database at `location`, read without the service that owns it (which
// may be down); REQUIREs an answer.
int CountRowsOffline(const DatabaseLocation& location, const std::string& table);

}  // namespace testing_support

#endif  // HOSPITAL_TEST_SUPPORT_TEST_DATABASE_H_
