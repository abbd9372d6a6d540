// What the SQLite engine adds to the storage seam (server_kit::SqliteDatabase: its errors,
// locks shared with other processes, group commit, WAL), on temporary files. What both engines
// promise is in test/storage/database_test.cc.
#include <sqlite3.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/sync.h"
#include "server_kit/rpc_support.h"
#include "server_kit/serve.h"
#include "server_kit/sqlite.h"
#include "testing_support/service_process.h"

namespace {

using Database = server_kit::SqliteDatabase;

std::unique_ptr<Database> OpenDatabase(const std::string& path,
                                       const std::vector<std::string>& migrations) {
  absl::StatusOr<std::unique_ptr<Database>> database = Database::Open(path, migrations);
  INFO(database.status().ToString());
  REQUIRE(database.ok());
  return *std::move(database);
}

TEST_CASE("SQLite errors map to status codes once", "[storage]") {
  testing_support::TempDir dir;
  auto database =
      OpenDatabase(dir.path() + "/test.db",
                   {"CREATE TABLE parent (id TEXT PRIMARY KEY);"
                    "CREATE TABLE child (id TEXT PRIMARY KEY, parent TEXT REFERENCES parent(id),"
                    " n INTEGER CHECK (n > 0))"});
  auto run = [&](const std::string& sql) {
    return database->InTransaction(
        [&](Database::Session& session) { return session.Prepare(sql).Run(); });
  };
  REQUIRE(run("INSERT INTO parent VALUES ('a')").ok());
  CHECK(run("INSERT INTO parent VALUES ('a')").code() == absl::StatusCode::kAlreadyExists);
  CHECK(run("INSERT INTO child VALUES ('c', 'missing', 1)").code() ==
        absl::StatusCode::kFailedPrecondition);  // Foreign keys are on.
  CHECK(run("INSERT INTO child VALUES ('c', 'a', 0)").code() == absl::StatusCode::kInvalidArgument);
  // What a client is told names the kind of failure, never the statement or the data.
  const absl::Status duplicate = run("INSERT INTO parent VALUES ('a')");
  CHECK(std::string(duplicate.message()) == "storage: constraint failed");
  CHECK(server_kit::ToStatus(5 /* SQLITE_BUSY */, "locked", "write").code() ==
        absl::StatusCode::kUnavailable);
  CHECK(server_kit::ToStatus(11 /* SQLITE_CORRUPT */, "bad", "read").code() ==
        absl::StatusCode::kDataLoss);
  CHECK(server_kit::ToStatus(13 /* SQLITE_FULL */, "full", "/var/db/x.db").code() ==
        absl::StatusCode::kResourceExhausted);
  const absl::Status read_only =
      server_kit::ToStatus(8 /* SQLITE_READONLY */, "attempt to write", "/var/db/x.db");
  CHECK(read_only.code() == absl::StatusCode::kUnavailable);
  CHECK_THAT(std::string(read_only.message()), !Catch::Contains("/var/db"));
}

TEST_CASE("readiness finds a database that can be read but not written", "[storage]") {
  testing_support::TempDir dir;
  auto database = OpenDatabase(dir.path() + "/test.db", {"CREATE TABLE t (id TEXT PRIMARY KEY)"});
  REQUIRE(database->CheckWritable().ok());
  CHECK(*database->SchemaVersion() == 1);  // Rewritten with its own value.
  // What a read-only file or mount does to every write, done through SQLite itself.
  REQUIRE(database
              ->InTransaction(
                  [](Database::Session& session) { return session.Exec("PRAGMA query_only = 1"); })
              .ok());
  CHECK(database->Ping().ok());  // Reads still work...
  const absl::Status writable = database->CheckWritable();
  CHECK(writable.code() == absl::StatusCode::kUnavailable);  // ...writes do not.
  CHECK(std::string(writable.message()) == "storage: attempt to write a readonly database");
}

// Another connection holds the database's write lock (BEGIN IMMEDIATE, as the batch job, the
// direct writes, a migration or a backup do) for `hold`, on a thread of its own.
class WriteLockHolder final {
 public:
  WriteLockHolder(const std::string& path, absl::Duration hold) {
    REQUIRE(sqlite3_open(path.c_str(), &db_) == SQLITE_OK);
    const std::string lock = absl::StrCat("BEGIN IMMEDIATE; INSERT INTO t VALUES ('held ",
                                          absl::ToInt64Milliseconds(hold), " ms')");
    REQUIRE(sqlite3_exec(db_, lock.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
    releaser_ = std::thread([this, hold] {
      absl::SleepFor(hold);
      committed_ = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
    });
  }
  ~WriteLockHolder() {
    releaser_.join();
    sqlite3_close(db_);
  }
  int committed() {
    releaser_.join();
    releaser_ = std::thread([] {});
    return committed_;
  }

 private:
  sqlite3* db_ = nullptr;
  std::thread releaser_;
  int committed_ = -1;
};

absl::Status InsertRow(Database& database, const std::string& id) {
  return database.InTransaction([&](Database::Session& session) {
    server_kit::Statement& insert = session.Prepare("INSERT INTO t VALUES (?1)");
    insert.BindText(1, id);
    return insert.Run();
  });
}

TEST_CASE(
    "a write lock held by another connection for less than the busy timeout delays a "
    "write, and one held longer fails it",
    "[storage]") {
  testing_support::TempDir dir;
  const std::string path = dir.path() + "/test.db";
  {
    // The default busy timeout, 5 s, against a lock held for 0.6 s: the write waits, then
    // commits.
    auto database = OpenDatabase(path, {"CREATE TABLE t (id TEXT PRIMARY KEY)"});
    WriteLockHolder holder(path, absl::Milliseconds(600));
    const absl::Time start = absl::Now();
    const absl::Status written = InsertRow(*database, "waited");
    const absl::Duration waited = absl::Now() - start;
    INFO(written.ToString());
    CHECK(written.ok());
    CHECK(waited >= absl::Milliseconds(500));
    CHECK(holder.committed() == SQLITE_OK);
  }
  // A busy timeout of 0.2 s against a lock held for 1.5 s: the write gives up after about the
  // timeout, with the retryable code, and changes nothing.
  server_kit::DatabaseOptions impatient_options;
  impatient_options.busy_timeout = absl::Milliseconds(200);
  absl::StatusOr<std::unique_ptr<Database>> impatient =
      Database::Open(path, {"CREATE TABLE t (id TEXT PRIMARY KEY)"}, impatient_options);
  REQUIRE(impatient.ok());
  WriteLockHolder holder(path, absl::Milliseconds(1500));
  const absl::Time start = absl::Now();
  const absl::Status refused = InsertRow(**impatient, "gave-up");
  const absl::Duration waited = absl::Now() - start;
  CHECK(refused.code() == absl::StatusCode::kUnavailable);
  CHECK(std::string(refused.message()) == "storage: database is locked");
  CHECK(waited >= absl::Milliseconds(150));
  CHECK(waited < absl::Milliseconds(1200));
  CHECK(holder.committed() == SQLITE_OK);
  int rows = -1;
  REQUIRE((*impatient)
              ->WithSession([&](Database::Session& session) -> absl::Status {
                server_kit::Statement& count =
                    session.Prepare("SELECT count(*) FROM t WHERE id = 'gave-up'");
                if (auto row = count.Step(); !row.ok()) return row.status();
                rows = static_cast<int>(count.ColumnInt(0));
                return absl::OkStatus();
              })
              .ok());
  CHECK(rows == 0);
}

// The ids in table t, in order.
std::vector<std::string> Ids(Database& database) {
  std::vector<std::string> ids;
  REQUIRE(database
              .WithSession([&](Database::Session& session) {
                return session.Prepare("SELECT id FROM t ORDER BY id")
                    .ForEachRow([&](const server_kit::Statement& row) {
                      ids.push_back(row.ColumnText(0));
                    });
              })
              .ok());
  return ids;
}

absl::Status Insert(Database::Session& session, const std::string& id) {
  server_kit::Statement& insert = session.Prepare("INSERT INTO t VALUES (?1)");
  insert.BindText(1, id);
  return insert.Run();
}

// Holds the database's running group open until released, so that the units submitted meanwhile
// queue up and share the next group.
class HeldGroup {
 public:
  explicit HeldGroup(Database& database) : database_(database) {
    leader_ = std::thread([this] {
      status_ = database_.InTransaction([this](Database::Session& session) {
        running_.Notify();
        release_.WaitForNotification();
        return Insert(session, "leader");
      });
    });
    running_.WaitForNotification();
  }
  // Submits `work` on a thread of its own and returns once it is queued behind the held group.
  void Submit(std::function<absl::Status(Database::Session&)> work, absl::Status* result) {
    const int before = database_.queued();
    followers_.emplace_back(
        [this, work = std::move(work), result] { *result = database_.InTransaction(work); });
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    while (database_.queued() == before && absl::Now() < give_up) std::this_thread::yield();
    REQUIRE(database_.queued() == before + 1);
  }
  // Lets the held group and everything queued behind it run; returns the held unit's status.
  absl::Status Release() {
    release_.Notify();
    leader_.join();
    for (std::thread& follower : followers_) follower.join();
    return status_;
  }

 private:
  Database& database_;
  base::Notification running_;
  base::Notification release_;
  absl::Status status_;
  std::thread leader_;
  std::vector<std::thread> followers_;
};

TEST_CASE("concurrent transactions share one commit and a failed unit affects no other",
          "[storage]") {
  testing_support::TempDir dir;
  auto database = OpenDatabase(dir.path() + "/test.db", {"CREATE TABLE t (id TEXT PRIMARY KEY)"});
  const std::int64_t commits_before = database->commits();
  HeldGroup held(*database);
  absl::Status first, failing, duplicate, last;
  held.Submit([](Database::Session& session) { return Insert(session, "a"); }, &first);
  held.Submit(
      [](Database::Session& session) {
        if (absl::Status inserted = Insert(session, "b"); !inserted.ok()) return inserted;
        return absl::AbortedError("changed my mind");
      },
      &failing);
  held.Submit([](Database::Session& session) { return Insert(session, "a"); }, &duplicate);
  held.Submit([](Database::Session& session) { return Insert(session, "c"); }, &last);
  REQUIRE(held.Release().ok());
  CHECK(first.ok());
  CHECK(failing.code() == absl::StatusCode::kAborted);
  CHECK(duplicate.code() == absl::StatusCode::kAlreadyExists);
  CHECK(last.ok());
  CHECK(Ids(*database) == std::vector<std::string>{"a", "c", "leader"});
  // The held group, then the four queued units together.
  CHECK(database->commits() - commits_before == 2);
}

TEST_CASE("a unit that loses its group's transaction fails every unit that shared it",
          "[storage]") {
  testing_support::TempDir dir;
  auto database = OpenDatabase(dir.path() + "/test.db", {"CREATE TABLE t (id TEXT PRIMARY KEY)"});
  HeldGroup held(*database);
  absl::Status before, losing, after;
  held.Submit([](Database::Session& session) { return Insert(session, "before"); }, &before);
  // What SQLite does on a full disk or an I/O error, done by hand: the transaction is gone.
  held.Submit(
      [](Database::Session& session) {
        if (absl::Status inserted = Insert(session, "losing"); !inserted.ok()) return inserted;
        return session.Exec("ROLLBACK");
      },
      &losing);
  held.Submit([](Database::Session& session) { return Insert(session, "after"); }, &after);
  REQUIRE(held.Release().ok());
  CHECK(before.code() == absl::StatusCode::kInternal);
  CHECK_THAT(std::string(before.message()), Catch::Contains("rolled back with its transaction"));
  CHECK(losing.code() == absl::StatusCode::kInternal);
  CHECK(after.ok());  // Run in a transaction of its own.
  CHECK(Ids(*database) == std::vector<std::string>{"after", "leader"});
}

TEST_CASE("a COMMIT that fails fails every unit of its group", "[storage]") {
  testing_support::TempDir dir;
  auto database = OpenDatabase(
      dir.path() + "/test.db",
      {"CREATE TABLE t (id TEXT PRIMARY KEY)", "CREATE TABLE parent (id TEXT PRIMARY KEY)",
       "CREATE TABLE child (parent_id TEXT REFERENCES parent (id) DEFERRABLE INITIALLY "
       "DEFERRED)"});
  HeldGroup held(*database);
  absl::Status first, orphan, last;
  held.Submit([](Database::Session& session) { return Insert(session, "first"); }, &first);
  // A deferred foreign key is checked by COMMIT, not when the row is written: this unit runs
  // cleanly, and the COMMIT of the group it shares fails.
  held.Submit(
      [](Database::Session& session) {
        return session.Exec("INSERT INTO child (parent_id) VALUES ('nobody')");
      },
      &orphan);
  held.Submit([](Database::Session& session) { return Insert(session, "last"); }, &last);
  REQUIRE(held.Release().ok());
  for (const absl::Status* status : {&first, &orphan, &last}) {
    INFO(status->ToString());
    CHECK(status->code() == absl::StatusCode::kFailedPrecondition);
  }
  CHECK(Ids(*database) == std::vector<std::string>{"leader"});
}

TEST_CASE("a failed unit that cannot be undone alone gives up its whole transaction", "[storage]") {
  testing_support::TempDir dir;
  auto database = OpenDatabase(dir.path() + "/test.db", {"CREATE TABLE t (id TEXT PRIMARY KEY)"});
  HeldGroup held(*database);
  absl::Status before, unreleasable, after;
  held.Submit([](Database::Session& session) { return Insert(session, "before"); }, &before);
  // Releasing its own savepoint leaves ROLLBACK TO nothing to roll back to: its write can no
  // longer be separated from the others' in the transaction.
  held.Submit(
      [](Database::Session& session) -> absl::Status {
        if (absl::Status released = session.Exec("RELEASE unit"); !released.ok()) return released;
        if (absl::Status inserted = Insert(session, "sneaky"); !inserted.ok()) return inserted;
        return absl::AbortedError("changed my mind");
      },
      &unreleasable);
  held.Submit([](Database::Session& session) { return Insert(session, "after"); }, &after);
  REQUIRE(held.Release().ok());
  CHECK(before.code() == absl::StatusCode::kAborted);
  CHECK_THAT(std::string(before.message()), Catch::Contains("could not be undone alone"));
  CHECK(unreleasable.code() == absl::StatusCode::kAborted);
  CHECK(after.ok());  // Run in a transaction of its own.
  CHECK(Ids(*database) == std::vector<std::string>{"after", "leader"});
}

TEST_CASE("reads do not wait for a transaction, and see only what is committed", "[storage]") {
  testing_support::TempDir dir;
  auto database = OpenDatabase(dir.path() + "/test.db", {"CREATE TABLE t (id TEXT PRIMARY KEY)"});
  REQUIRE(database->InTransaction([](Database::Session& session) { return Insert(session, "a"); })
              .ok());
  HeldGroup held(*database);  // Its transaction has inserted nothing yet and stays open.
  CHECK(Ids(*database) == std::vector<std::string>{"a"});  // Would block before the fix.
  const absl::Status write = database->WithSession(
      [](Database::Session& session) { return Insert(session, "from-a-read"); });
  CHECK_FALSE(write.ok());
  REQUIRE(held.Release().ok());
  CHECK(Ids(*database) == std::vector<std::string>{"a", "leader"});
}

TEST_CASE("the database is in WAL mode with foreign keys on", "[storage]") {
  testing_support::TempDir dir;
  auto database = OpenDatabase(dir.path() + "/test.db", {});
  std::string mode;
  std::int64_t foreign_keys = 0;
  // The writing connection is the one whose settings matter.
  REQUIRE(database
              ->InTransaction([&](Database::Session& session) -> absl::Status {
                server_kit::Statement& journal = session.Prepare("PRAGMA journal_mode");
                if (auto row = journal.Step(); !row.ok()) return row.status();
                mode = journal.ColumnText(0);
                server_kit::Statement& keys = session.Prepare("PRAGMA foreign_keys");
                if (auto row = keys.Step(); !row.ok()) return row.status();
                foreign_keys = keys.ColumnInt(0);
                return absl::OkStatus();
              })
              .ok());
  CHECK(mode == "wal");
  CHECK(foreign_keys == 1);
}

TEST_CASE("a half-read SELECT does not stop checkpoints from reusing the WAL", "[storage]") {
  // A statement stepped once and left unreset holds a read transaction open; SQLite then can
  // never restart the WAL, which grows with every commit (we saw 600 MB in a 30 s benchmark).
  testing_support::TempDir dir;
  server_kit::DatabaseOptions options;
  options.synchronous = "NORMAL";  // The test is about WAL size, not durability.
  absl::StatusOr<std::unique_ptr<Database>> database =
      Database::Open(dir.path() + "/test.db", {"CREATE TABLE t (payload BLOB)"}, options);
  REQUIRE(database.ok());
  REQUIRE((*database)->Ping().ok());  // Steps "SELECT count(*)" once and stops reading.
  const std::string megabyte(1 << 20, 'x');
  for (int i = 0; i < 24; ++i) {  // About 6,000 pages, six automatic checkpoints' worth.
    REQUIRE((*database)
                ->InTransaction([&](Database::Session& session) {
                  server_kit::Statement& insert = session.Prepare("INSERT INTO t VALUES (?1)");
                  insert.BindBlob(1, megabyte);
                  return insert.Run();
                })
                .ok());
    REQUIRE((*database)->Ping().ok());
  }
  const auto wal_bytes = std::filesystem::file_size(dir.path() + "/test.db-wal");
  CHECK(wal_bytes < 8u << 20);  // One checkpoint interval (1,000 pages) plus a transaction.
}

}  // namespace
