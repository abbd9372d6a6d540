// What the storage seam (server_kit/database.h) promises on both engines: migrations, the
// meaning of errors, atomic units under concurrent writers, snapshot reads, values that come
// back as they went in. Each case runs on SQLite and on a real PostgreSQL 15 server.
#include <catch2/catch.hpp>

#include <algorithm>
#include <stdexcept>
#include <thread>

#include "absl/strings/str_cat.h"
#include "server_kit/database.h"
#include "support/test_database.h"

namespace {

using server_kit::Database;
using server_kit::Schema;
using server_kit::Statement;
using testing_support::PostgresEngine;
using testing_support::SqliteEngine;
using testing_support::TestDatabase;

// One migration list for both engines (what these tests create is valid on both).
Schema Both(std::vector<std::string> migrations) { return {migrations, migrations}; }

absl::Status Insert(Database::Session& session, const std::string& id) {
  Statement& insert = session.Prepare("INSERT INTO t VALUES (?1)");
  insert.BindText(1, id);
  return insert.Run();
}

absl::Status InsertRow(Database& database, const std::string& id) {
  return database.InTransaction([&](Database::Session& session) { return Insert(session, id); });
}

// The ids in table t, in order.
std::vector<std::string> Ids(Database& database) {
  std::vector<std::string> ids;
  const absl::Status read = database.WithSession([&](Database::Session& session) {
    ids.clear();
    return session.Prepare("SELECT id FROM t ORDER BY id").ForEachRow([&](const Statement& row) {
      ids.push_back(row.ColumnText(0));
    });
  });
  INFO(read.ToString());
  REQUIRE(read.ok());
  return ids;
}

TEMPLATE_TEST_CASE("migrations run once each and record the schema version", "[storage]",
                   SqliteEngine, PostgresEngine) {
  std::vector<std::string> migrations = {"CREATE TABLE a (x INTEGER)"};
  TestDatabase database(TestType::kEngine, Both(migrations));
  CHECK(*database->SchemaVersion() == 1);
  migrations.push_back("CREATE TABLE b (y INTEGER)");
  CHECK(*database.Reopen(Both(migrations))->SchemaVersion() == 2);  // Only the new one ran.
  CHECK(*database.Reopen(Both(migrations))->SchemaVersion() == 2);
}

TEMPLATE_TEST_CASE("an older binary refuses a newer schema", "[storage]", SqliteEngine,
                   PostgresEngine) {
  TestDatabase database(TestType::kEngine,
                        Both({"CREATE TABLE a (x INTEGER)", "CREATE TABLE b (y INTEGER)"}));
  const auto old = database.TryReopen(Both({"CREATE TABLE a (x INTEGER)"}));
  CHECK(old.status().code() == absl::StatusCode::kFailedPrecondition);
}

TEMPLATE_TEST_CASE("a failed migration leaves the version where it was", "[storage]", SqliteEngine,
                   PostgresEngine) {
  TestDatabase database(TestType::kEngine, Both({"CREATE TABLE a (x INTEGER)"}));
  const auto broken = database.TryReopen(
      Both({"CREATE TABLE a (x INTEGER)", "CREATE TABLE b (y INTEGER); NOT SQL"}));
  REQUIRE_FALSE(broken.ok());
  CHECK_THAT(std::string(broken.status().message()), Catch::Contains("migration 2"));
  CHECK(*database.Reopen(Both({"CREATE TABLE a (x INTEGER)"}))->SchemaVersion() == 1);
  // Nothing of the failed migration stayed: b can be created again by a fixed one.
  CHECK(*database.Reopen(Both({"CREATE TABLE a (x INTEGER)", "CREATE TABLE b (y INTEGER)"}))
             ->SchemaVersion() == 2);
}

TEMPLATE_TEST_CASE("constraint violations map to the same codes on both engines", "[storage]",
                   SqliteEngine, PostgresEngine) {
  TestDatabase database(
      TestType::kEngine,
      Both({"CREATE TABLE parent (id TEXT PRIMARY KEY);"
            "CREATE TABLE child (id TEXT PRIMARY KEY, parent TEXT REFERENCES parent(id),"
            " n INTEGER NOT NULL CHECK (n > 0))"}));
  auto run = [&](const std::string& sql) {
    return database->InTransaction(
        [&](Database::Session& session) { return session.Prepare(sql).Run(); });
  };
  REQUIRE(run("INSERT INTO parent VALUES ('a')").ok());
  const absl::Status duplicate = run("INSERT INTO parent VALUES ('a')");
  CHECK(duplicate.code() == absl::StatusCode::kAlreadyExists);
  CHECK(run("INSERT INTO child VALUES ('c', 'missing', 1)").code() ==
        absl::StatusCode::kFailedPrecondition);
  CHECK(run("INSERT INTO child VALUES ('c', 'a', 0)").code() == absl::StatusCode::kInvalidArgument);
  CHECK(run("INSERT INTO child VALUES ('c', 'a', NULL)").code() ==
        absl::StatusCode::kInvalidArgument);
  // What a client is told names the kind of failure, never the statement or the data.
  for (const absl::Status& status : {duplicate, run("SELECT x FROM missing WHERE x = 'secret'")}) {
    CHECK_THAT(std::string(status.message()), Catch::StartsWith("storage: "));
    CHECK_THAT(std::string(status.message()), !Catch::Contains("parent"));
    CHECK_THAT(std::string(status.message()), !Catch::Contains("secret"));
    CHECK_THAT(std::string(status.message()), !Catch::Contains("SELECT"));
  }
}

TEMPLATE_TEST_CASE("a failed unit writes nothing", "[storage]", SqliteEngine, PostgresEngine) {
  TestDatabase database(TestType::kEngine, Both({"CREATE TABLE t (id TEXT PRIMARY KEY)"}));
  const absl::Status failed = database->InTransaction([](Database::Session& session) {
    if (absl::Status inserted = Insert(session, "x"); !inserted.ok()) return inserted;
    return absl::FailedPreconditionError("changed my mind");
  });
  CHECK(failed.code() == absl::StatusCode::kFailedPrecondition);
  CHECK(Ids(*database).empty());
}

TEMPLATE_TEST_CASE(
    "under concurrent writers every acknowledged unit is stored and no failed one is", "[storage]",
    SqliteEngine, PostgresEngine) {
  TestDatabase database(TestType::kEngine, Both({"CREATE TABLE t (id TEXT PRIMARY KEY)"}));
  constexpr int kThreads = 8;
  constexpr int kUnitsEach = 60;
  std::vector<std::vector<std::string>> acknowledged(kThreads);
  std::vector<int> wrong_status(kThreads, 0);  // Catch2's assertions are not thread-safe.
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kUnitsEach; ++i) {
        const std::string id = absl::StrCat("t", t, "-", i);
        // Every third unit writes and then fails: it must leave no trace.
        const bool fail = i % 3 == 0;
        const absl::Status status = database->InTransaction([&](Database::Session& session) {
          if (absl::Status inserted = Insert(session, id); !inserted.ok()) return inserted;
          return fail ? absl::FailedPreconditionError("changed my mind") : absl::OkStatus();
        });
        if (status.ok() == fail) ++wrong_status[static_cast<std::size_t>(t)];
        if (status.ok()) acknowledged[static_cast<std::size_t>(t)].push_back(id);
      }
    });
  }
  for (std::thread& writer : writers) writer.join();
  CHECK(wrong_status == std::vector<int>(kThreads, 0));
  std::vector<std::string> expected;
  for (const auto& ids : acknowledged) expected.insert(expected.end(), ids.begin(), ids.end());
  std::sort(expected.begin(), expected.end());
  CHECK(Ids(*database) == expected);
  const server_kit::StorageStats stats = database->stats();
  CHECK(stats.units_committed >= static_cast<std::int64_t>(expected.size()));
  CHECK(stats.commits <= stats.units_committed);
}

TEMPLATE_TEST_CASE("read-modify-write units under contention lose no update", "[storage]",
                   SqliteEngine, PostgresEngine) {
  // Each unit reads the counter and writes it back plus one: what SQLite's one writer makes
  // safe, and PostgreSQL's SERIALIZABLE with retries of the conflicting ones.
  TestDatabase database(TestType::kEngine,
                        Both({"CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
                              "INSERT INTO counter VALUES (1, 0)"}));
  constexpr int kThreads = 6;
  constexpr int kIncrementsEach = 40;
  std::vector<int> failures(kThreads, 0);
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kIncrementsEach; ++i) {
        const absl::Status status = database->InTransaction([](Database::Session& session) {
          Statement& read = session.Prepare("SELECT n FROM counter WHERE id = 1");
          absl::StatusOr<bool> row = read.Step();
          if (!row.ok()) return row.status();
          const std::int64_t n = read.ColumnInt(0);
          Statement& write = session.Prepare("UPDATE counter SET n = ?1 WHERE id = 1");
          write.BindInt(1, n + 1);
          return write.Run();
        });
        if (!status.ok()) ++failures[static_cast<std::size_t>(t)];
      }
    });
  }
  for (std::thread& writer : writers) writer.join();
  CHECK(failures == std::vector<int>(kThreads, 0));
  std::int64_t n = -1;
  REQUIRE(database
              ->WithSession([&](Database::Session& session) -> absl::Status {
                Statement& read = session.Prepare("SELECT n FROM counter WHERE id = 1");
                absl::StatusOr<bool> row = read.Step();
                if (!row.ok()) return row.status();
                n = read.ColumnInt(0);
                return absl::OkStatus();
              })
              .ok());
  CHECK(n == kThreads * kIncrementsEach);
  if (TestType::kEngine == server_kit::Engine::kPostgres) {
    CHECK(database->stats().transaction_retries > 0);  // The conflicts happened, and were retried.
  }
}

TEMPLATE_TEST_CASE("a unit that throws fails alone and the next one runs", "[storage]",
                   SqliteEngine, PostgresEngine) {
  TestDatabase database(TestType::kEngine, Both({"CREATE TABLE t (id TEXT PRIMARY KEY)"}));
  const absl::Status throwing =
      database->InTransaction([](Database::Session& session) -> absl::Status {
        if (absl::Status inserted = Insert(session, "throwing"); !inserted.ok()) return inserted;
        throw std::runtime_error("boom");
      });
  CHECK(throwing.code() == absl::StatusCode::kInternal);
  CHECK_THAT(std::string(throwing.message()), Catch::Contains("boom"));
  CHECK(InsertRow(*database, "after").ok());
  CHECK(Ids(*database) == std::vector<std::string>{"after"});
}

TEMPLATE_TEST_CASE("a statement the engine cannot prepare fails its unit, not the process",
                   "[storage]", SqliteEngine, PostgresEngine) {
  TestDatabase database(TestType::kEngine, Both({"CREATE TABLE t (id TEXT PRIMARY KEY)"}));
  const auto select_missing = [](Database::Session& session) {
    Statement& select = session.Prepare("SELECT x FROM missing WHERE x = ?1");
    select.BindText(1, "a");
    return select.Run();
  };
  for (int attempt = 0; attempt < 2; ++attempt) {  // It fails the same way again.
    const absl::Status failed = database->InTransaction(select_missing);
    CHECK(failed.code() == absl::StatusCode::kInternal);
    CHECK_THAT(std::string(failed.message()), !Catch::Contains("SELECT"));  // Logged, not sent.
  }
  CHECK(database->WithSession(select_missing).code() == absl::StatusCode::kInternal);
  // Once the table exists, the same statement prepares and runs.
  REQUIRE(database
              ->InTransaction([](Database::Session& session) {
                return session.Exec("CREATE TABLE missing (x TEXT)");
              })
              .ok());
  CHECK(database->InTransaction(select_missing).ok());
}

TEMPLATE_TEST_CASE("reads see only what is committed, and cannot write", "[storage]", SqliteEngine,
                   PostgresEngine) {
  TestDatabase database(TestType::kEngine, Both({"CREATE TABLE t (id TEXT PRIMARY KEY)"}));
  REQUIRE(InsertRow(*database, "a").ok());
  const absl::Status write = database->WithSession(
      [](Database::Session& session) { return Insert(session, "from-a-read"); });
  CHECK_FALSE(write.ok());
  CHECK(Ids(*database) == std::vector<std::string>{"a"});
}

TEMPLATE_TEST_CASE("values come back as they went in", "[storage]", SqliteEngine, PostgresEngine) {
  const std::string blob_type =
      TestType::kEngine == server_kit::Engine::kPostgres ? "BYTEA" : "BLOB";
  TestDatabase database(
      TestType::kEngine,
      {{"CREATE TABLE v (id TEXT PRIMARY KEY, n BIGINT, b BLOB, s TEXT, at BIGINT)"},
       {"CREATE TABLE v (id TEXT PRIMARY KEY, n BIGINT, b BYTEA, s TEXT, at BIGINT)"}});
  const std::string bytes("\0\x01\xff\\x'\"?1", 10);
  const std::string text = "it's \"quoted\" ?2 -- not a comment, ünïcödé";
  const absl::Time at = absl::FromUnixMicros(1'765'000'000'123'456);
  REQUIRE(database
              ->InTransaction([&](Database::Session& session) {
                Statement& insert =
                    session.Prepare("INSERT INTO v (id, n, b, s, at) VALUES (?1, ?2, ?3, ?4, ?5)");
                insert.BindText(1, "full");
                insert.BindInt(2, -(std::int64_t{1} << 62));
                insert.BindBlob(3, bytes);
                insert.BindText(4, text);
                insert.BindTime(5, at);
                if (absl::Status inserted = insert.Run(); !inserted.ok()) return inserted;
                CHECK(insert.changes() == 1);
                // Unbound parameters are NULL.
                Statement& empty = session.Prepare("INSERT INTO v (id, n, b) VALUES (?1, ?2, ?3)");
                empty.BindText(1, "empty");
                return empty.Run();
              })
              .ok());
  REQUIRE(database
              ->WithSession([&](Database::Session& session) -> absl::Status {
                Statement& select = session.Prepare(
                    "SELECT n, b, s, at, id FROM v WHERE id = ?1 OR id = '?1' ORDER BY id DESC");
                select.BindText(1, "full");
                absl::StatusOr<bool> row = select.Step();
                if (!row.ok()) return row.status();
                REQUIRE(*row);
                CHECK(select.ColumnCount() == 5);
                CHECK(select.ColumnInt(0) == -(std::int64_t{1} << 62));
                CHECK(select.ColumnBlob(1) == bytes);
                CHECK(select.ColumnText(2) == text);
                CHECK(select.ColumnTime(3) == at);
                Statement& nulls = session.Prepare("SELECT n, b, s FROM v WHERE id = 'empty'");
                row = nulls.Step();
                if (!row.ok()) return row.status();
                REQUIRE(*row);
                CHECK(nulls.ColumnIsNull(0));
                CHECK(nulls.ColumnIsNull(1));
                CHECK(nulls.ColumnIsNull(2));
                CHECK(nulls.ColumnInt(0) == 0);
                CHECK(nulls.ColumnText(2).empty());
                return absl::OkStatus();
              })
              .ok());
}

TEMPLATE_TEST_CASE("a full page is followed by the next and the last has no position", "[storage]",
                   SqliteEngine, PostgresEngine) {
  TestDatabase database(TestType::kEngine, Both({"CREATE TABLE t (id TEXT PRIMARY KEY)"}));
  for (const char* id : {"a", "B", "b", "c", "d"}) REQUIRE(InsertRow(*database, id).ok());
  std::vector<std::string> seen;
  std::string position;
  int pages = 0;
  do {
    REQUIRE(database
                ->WithSession([&](Database::Session& session) -> absl::Status {
                  Statement& select =
                      session.Prepare("SELECT id FROM t WHERE id > ?1 ORDER BY id LIMIT ?2");
                  select.BindText(1, position);
                  absl::StatusOr<server_kit::Page<std::string>> page =
                      server_kit::ReadPage<std::string>(
                          select, 2, 2, [](const Statement& row) { return row.ColumnText(0); },
                          [](const std::string& last) { return last; });
                  if (!page.ok()) return page.status();
                  seen.insert(seen.end(), page->items.begin(), page->items.end());
                  position = page->next_position;
                  return absl::OkStatus();
                })
                .ok());
    ++pages;
  } while (!position.empty() && pages < 10);
  // By bytes on both engines: "B" before "a".
  CHECK(seen == std::vector<std::string>{"B", "a", "b", "c", "d"});
  CHECK(pages == 3);
}

}  // namespace
