#include "support/test_database.h"

#include <atomic>
#include <fstream>
#include <sstream>

#include <catch2/catch.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "server_kit/open_database.h"

namespace testing_support {

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
    std::ifstream file(location.password_file);
    std::stringstream contents;
    contents << file.rdbuf();
    options.password = std::string(absl::StripAsciiWhitespace(contents.str()));
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

}  // namespace testing_support
