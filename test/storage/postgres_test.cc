// What the PostgreSQL engine adds to the storage seam: credentials kept out of every message, a
// bounded pool, a lost server answered UNAVAILABLE and served again when it returns, and no
// acknowledgement for a commit the synchronous standby did not confirm. Each case that stops a
// server has a server of its own.
#include <catch2/catch.hpp>

#include <libpq-fe.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/sync.h"
#include "server_kit/postgres.h"
#include "support/hospital_fixture.h"
#include "support/test_database.h"
#include "testing_support/postgres_server.h"
#include "testing_support/service_process.h"

namespace {

using server_kit::Database;
using server_kit::PostgresDatabase;
using testing_support::PostgresServer;

const std::vector<std::string> kTable = {"CREATE TABLE t (id TEXT PRIMARY KEY)"};

std::string Password(const PostgresServer& server) {
  return testing_support::ReadPasswordFile(server.password_file());
}

// A started server of the test's own, with database "db".
std::unique_ptr<PostgresServer> OwnServer(const std::string& extra_config = "") {
  auto server = std::make_unique<PostgresServer>(extra_config);
  const absl::Status started = server->Start();
  INFO(started.ToString() << "\n" << server->log());
  REQUIRE(started.ok());
  REQUIRE(server->CreateDatabase("db").ok());
  return server;
}

std::unique_ptr<PostgresDatabase> Open(const PostgresServer& server,
                                       server_kit::DatabaseOptions options = {}) {
  options.password = Password(server);
  absl::StatusOr<std::unique_ptr<PostgresDatabase>> database =
      PostgresDatabase::Open(server.Uri("db"), kTable, options);
  INFO(database.status().ToString());
  REQUIRE(database.ok());
  return *std::move(database);
}

absl::Status InsertRow(Database& database, const std::string& id) {
  return database.InTransaction([&](Database::Session& session) {
    server_kit::Statement& insert = session.Prepare("INSERT INTO t VALUES (?1)");
    insert.BindText(1, id);
    return insert.Run();
  });
}

int CountRows(Database& database) {
  int rows = -1;
  REQUIRE(database
              .WithSession([&](Database::Session& session) -> absl::Status {
                server_kit::Statement& count = session.Prepare("SELECT count(*) FROM t");
                absl::StatusOr<bool> row = count.Step();
                if (!row.ok()) return row.status();
                rows = static_cast<int>(count.ColumnInt(0));
                return absl::OkStatus();
              })
              .ok());
  return rows;
}

TEST_CASE("a URI that holds a password, or that libpq cannot read, is refused without echoing it",
          "[postgres]") {
  for (const std::string uri : {"postgresql://hospital:s3cr3t-pw@127.0.0.1:5432/db",
                                "postgresql://127.0.0.1:5432/db?password=s3cr3t-pw",
                                "postgresql://hospital:s3cr3t-pw@127.0.0.1:notaport/db",
                                "postgresql://hospital:s3cr3t%zz@127.0.0.1/db"}) {
    INFO(uri);
    const absl::StatusOr<std::string> described = server_kit::DescribePostgresUri(uri);
    CHECK(described.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(described.status().message()), !Catch::Contains("s3cr3t"));
    const auto opened = PostgresDatabase::Open(uri, kTable);
    CHECK(opened.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(opened.status().message()), !Catch::Contains("s3cr3t"));
  }
  const absl::StatusOr<std::string> described = server_kit::DescribePostgresUri(
      "postgresql://hospital@db1:5432,db2:5433/patients?target_session_attrs=read-write");
  REQUIRE(described.ok());
  CHECK(*described == "postgresql host=db1,db2 port=5432,5433 dbname=patients user=hospital");
}

TEST_CASE("a wrong password, a missing database or no server: refused with libpq's reason",
          "[postgres]") {
  PostgresServer& server = testing_support::SharedPostgres();
  REQUIRE(server.CreateDatabase("reasons").ok());
  server_kit::DatabaseOptions wrong;
  wrong.password = "not-the-pass-123";
  const auto refused = PostgresDatabase::Open(server.Uri("reasons"), kTable, wrong);
  CHECK(refused.status().code() == absl::StatusCode::kUnavailable);
  CHECK_THAT(std::string(refused.status().message()),
             Catch::Contains("password authentication failed"));
  CHECK_THAT(std::string(refused.status().message()), !Catch::Contains("not-the-pass-123"));

  server_kit::DatabaseOptions right;
  right.password = Password(server);
  const auto missing = PostgresDatabase::Open(server.Uri("no_such_db"), kTable, right);
  CHECK(missing.status().code() == absl::StatusCode::kUnavailable);
  CHECK_THAT(std::string(missing.status().message()), Catch::Contains("does not exist"));
  CHECK_THAT(std::string(missing.status().message()), !Catch::Contains(right.password));

  const auto nobody = PostgresDatabase::Open(
      absl::StrCat("postgresql://hospital@127.0.0.1:", testing_support::FreePort(), "/db"), kTable,
      right);
  CHECK(nobody.status().code() == absl::StatusCode::kUnavailable);
  CHECK_THAT(std::string(nobody.status().message()), Catch::Contains("127.0.0.1"));
}

TEST_CASE("a server that goes away fails calls at once, and is used again when it returns",
          "[postgres]") {
  auto server = OwnServer();
  auto database = Open(*server);
  REQUIRE(InsertRow(*database, "before").ok());
  REQUIRE(database->CheckWritable().ok());
  server->Kill();
  const absl::Time start = absl::Now();
  const absl::Status during = InsertRow(*database, "during");
  CHECK(during.code() == absl::StatusCode::kUnavailable);
  CHECK_THAT(std::string(during.message()), !Catch::Contains("127.0.0.1"));  // Logged only.
  CHECK(database->CheckWritable().code() == absl::StatusCode::kUnavailable);
  CHECK(database->Ping().code() == absl::StatusCode::kUnavailable);
  CHECK(absl::Now() - start < absl::Seconds(3));  // Refused, not hung.
  CHECK(database->stats().connection_failures > 0);
  // Back on the same port with the same data: the same Database serves again by itself.
  REQUIRE(server->Start().ok());
  CHECK(testing_support::Eventually([&] { return database->CheckWritable().ok(); },
                                    absl::Seconds(10)));
  REQUIRE(InsertRow(*database, "after").ok());
  CHECK(CountRows(*database) == 2);  // "before" survived the kill; "during" was never written.
}

TEST_CASE(
    "the pool opens at most pool_size connections, and a caller waits for one, then is "
    "refused",
    "[postgres]") {
  auto server = OwnServer();
  server_kit::DatabaseOptions options;
  options.pool_size = 1;
  options.busy_timeout = absl::Milliseconds(300);
  auto database = Open(*server, options);
  base::Notification holding;
  base::Notification release;
  std::thread holder([&] {
    (void)database->InTransaction([&](Database::Session&) {
      holding.Notify();
      release.WaitForNotification();
      return absl::OkStatus();
    });
  });
  holding.WaitForNotification();
  CHECK(database->stats().connections_in_use == 1);
  const absl::Time start = absl::Now();
  const absl::Status refused = InsertRow(*database, "x");
  const absl::Duration waited = absl::Now() - start;
  CHECK(refused.code() == absl::StatusCode::kUnavailable);
  CHECK(waited >= absl::Milliseconds(250));
  CHECK(waited < absl::Seconds(3));
  release.Notify();
  holder.join();
  const server_kit::StorageStats stats = database->stats();
  CHECK(stats.pool_timeouts == 1);
  CHECK(stats.connections_open == 1);
  CHECK(stats.pool_size == 1);
  CHECK(InsertRow(*database, "y").ok());
}

TEST_CASE("a unit that goes on after a failed statement commits nothing", "[postgres]") {
  testing_support::TestDatabase database(server_kit::Engine::kPostgres, {kTable, kTable});
  REQUIRE(InsertRow(*database, "taken").ok());
  const absl::Status status = database->InTransaction([](Database::Session& session) {
    server_kit::Statement& insert = session.Prepare("INSERT INTO t VALUES (?1)");
    insert.BindText(1, "new");
    if (absl::Status inserted = insert.Run(); !inserted.ok()) return inserted;
    insert.Reset();
    insert.BindText(1, "taken");
    (void)insert.Run();  // Fails ALREADY_EXISTS, and PostgreSQL aborts the transaction.
    return absl::OkStatus();
  });
  CHECK(status.code() == absl::StatusCode::kInternal);
  CHECK(CountRows(*database) == 1);
}

TEST_CASE("a commit the synchronous standby never confirms is not acknowledged", "[postgres]") {
  // A standby that never connects: every commit waits for it, until statement_timeout cuts the
  // wait short and PostgreSQL keeps the commit locally, saying so only in a warning.
  auto server = OwnServer();
  server_kit::DatabaseOptions options;
  options.statement_timeout = absl::Milliseconds(300);
  auto database = Open(*server, options);
  PGconn* admin = PQconnectdb(server->SocketConnection("db").c_str());
  REQUIRE(PQstatus(admin) == CONNECTION_OK);
  for (const char* sql :
       {"ALTER SYSTEM SET synchronous_standby_names = 'ghost'", "SELECT pg_reload_conf()"}) {
    PGresult* result = PQexec(admin, sql);
    CHECK(PQresultStatus(result) != PGRES_FATAL_ERROR);
    PQclear(result);
  }
  PQfinish(admin);
  absl::SleepFor(absl::Milliseconds(200));  // The reload reaches the backends asynchronously.
  const absl::Time start = absl::Now();
  const absl::Status status = InsertRow(*database, "one-node-only");
  CHECK(status.code() == absl::StatusCode::kUnavailable);
  CHECK_THAT(std::string(status.message()), Catch::Contains("not known"));
  CHECK(absl::Now() - start < absl::Seconds(3));
  CHECK(database->CheckWritable().code() == absl::StatusCode::kUnavailable);
}

}  // namespace
