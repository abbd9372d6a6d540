// The SQLite layer and the repositories, on temporary files.
#include <sqlite3.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "appointments/appointments_repository.h"
#include "base/sync.h"
#include "morgue/morgue_repository.h"
#include "patients/patients_repository.h"
#include "server_kit/rpc_support.h"
#include "server_kit/serve.h"
#include "server_kit/sqlite.h"
#include "testing_support/service_process.h"

namespace {

using server_kit::Database;

// Admits a patient as the asynchronous workflow's consumer does, in its own transaction.
void AdmitFromEvent(Database& database, const std::string& patient_id, const std::string& event_id,
                    absl::Time now) {
  REQUIRE(database
              .InTransaction([&](Database::Session& session) {
                morgue::AdmitResult result;
                return morgue::MorgueRepository::AdmitIn(session, patient_id, event_id, now,
                                                         "cause", morgue::Confirmation::kConfirmed,
                                                         now, result);
              })
              .ok());
}

std::unique_ptr<Database> Open(const std::string& path,
                               const std::vector<std::string>& migrations) {
  absl::StatusOr<std::unique_ptr<Database>> database = Database::Open(path, migrations);
  INFO(database.status().ToString());
  REQUIRE(database.ok());
  return *std::move(database);
}

TEST_CASE("migrations run once each and record the schema version", "[storage]") {
  testing_support::TempDir dir;
  const std::string path = dir.path() + "/test.db";
  std::vector<std::string> migrations = {"CREATE TABLE a (x INTEGER)"};
  CHECK(*Open(path, migrations)->SchemaVersion() == 1);
  migrations.push_back("CREATE TABLE b (y INTEGER)");
  CHECK(*Open(path, migrations)->SchemaVersion() == 2);  // Only the new one ran.
  CHECK(*Open(path, migrations)->SchemaVersion() == 2);
}

TEST_CASE("an older binary refuses a newer schema", "[storage]") {
  testing_support::TempDir dir;
  const std::string path = dir.path() + "/test.db";
  Open(path, {"CREATE TABLE a (x)", "CREATE TABLE b (y)"});
  absl::StatusOr<std::unique_ptr<Database>> old = Database::Open(path, {"CREATE TABLE a (x)"});
  CHECK(old.status().code() == absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("a failed migration leaves the version where it was", "[storage]") {
  testing_support::TempDir dir;
  const std::string path = dir.path() + "/test.db";
  Open(path, {"CREATE TABLE a (x)"});
  absl::StatusOr<std::unique_ptr<Database>> broken =
      Database::Open(path, {"CREATE TABLE a (x)", "THIS IS NOT SQL"});
  REQUIRE_FALSE(broken.ok());
  CHECK_THAT(std::string(broken.status().message()), Catch::Contains("migration 2"));
  CHECK(*Open(path, {"CREATE TABLE a (x)"})->SchemaVersion() == 1);
}

TEST_CASE("SQLite errors map to status codes once", "[storage]") {
  testing_support::TempDir dir;
  auto database =
      Open(dir.path() + "/test.db",
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
  auto database = Open(dir.path() + "/test.db", {"CREATE TABLE t (id TEXT PRIMARY KEY)"});
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
    auto database = Open(path, {"CREATE TABLE t (id TEXT PRIMARY KEY)"});
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
  absl::StatusOr<std::unique_ptr<Database>> impatient =
      Database::Open(path, {"CREATE TABLE t (id TEXT PRIMARY KEY)"},
                     server_kit::DatabaseOptions{absl::Milliseconds(200)});
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

TEST_CASE("a failed transaction writes nothing", "[storage]") {
  testing_support::TempDir dir;
  auto database = Open(dir.path() + "/test.db", {"CREATE TABLE t (id TEXT PRIMARY KEY)"});
  const absl::Status failed = database->InTransaction([](Database::Session& session) {
    if (auto s = session.Prepare("INSERT INTO t VALUES ('x')").Run(); !s.ok()) return s;
    return absl::AbortedError("changed my mind");
  });
  CHECK(failed.code() == absl::StatusCode::kAborted);
  int rows = -1;
  REQUIRE(database
              ->WithSession([&](Database::Session& session) -> absl::Status {
                server_kit::Statement& count = session.Prepare("SELECT count(*) FROM t");
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
  auto database = Open(dir.path() + "/test.db", {"CREATE TABLE t (id TEXT PRIMARY KEY)"});
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

TEST_CASE("under concurrent writers every acknowledged unit is stored and no failed one is",
          "[storage]") {
  testing_support::TempDir dir;
  auto database = Open(dir.path() + "/test.db", {"CREATE TABLE t (id TEXT PRIMARY KEY)"});
  constexpr int kThreads = 8;
  constexpr int kUnitsEach = 100;
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
          return fail ? absl::AbortedError("changed my mind") : absl::OkStatus();
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
  CHECK(database->units_committed() >= static_cast<std::int64_t>(expected.size()));
  CHECK(database->commits() <= database->units_committed());
}

TEST_CASE("a unit that loses its group's transaction fails every unit that shared it",
          "[storage]") {
  testing_support::TempDir dir;
  auto database = Open(dir.path() + "/test.db", {"CREATE TABLE t (id TEXT PRIMARY KEY)"});
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
  auto database =
      Open(dir.path() + "/test.db",
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

TEST_CASE("a unit that throws fails alone and the next writer is not left waiting", "[storage]") {
  testing_support::TempDir dir;
  auto database = Open(dir.path() + "/test.db", {"CREATE TABLE t (id TEXT PRIMARY KEY)"});
  HeldGroup held(*database);
  absl::Status before, throwing, after;
  held.Submit([](Database::Session& session) { return Insert(session, "before"); }, &before);
  held.Submit(
      [](Database::Session& session) -> absl::Status {
        if (absl::Status inserted = Insert(session, "throwing"); !inserted.ok()) return inserted;
        throw std::runtime_error("boom");
      },
      &throwing);
  held.Submit([](Database::Session& session) { return Insert(session, "after"); }, &after);
  REQUIRE(held.Release().ok());
  CHECK(before.ok());
  CHECK(throwing.code() == absl::StatusCode::kInternal);
  CHECK_THAT(std::string(throwing.message()), Catch::Contains("boom"));
  CHECK(after.ok());
  // Leadership was handed on: a later writer runs.
  CHECK(database->InTransaction([](Database::Session& session) { return Insert(session, "later"); })
            .ok());
  CHECK(Ids(*database) == std::vector<std::string>{"after", "before", "later", "leader"});
}

TEST_CASE("a statement SQLite cannot prepare fails its unit, not the process", "[storage]") {
  testing_support::TempDir dir;
  auto database = Open(dir.path() + "/test.db", {"CREATE TABLE t (id TEXT PRIMARY KEY)"});
  const auto select_missing = [](Database::Session& session) {
    return session.Prepare("SELECT x FROM missing WHERE x = ?1").Run();
  };
  for (int attempt = 0; attempt < 2; ++attempt) {  // Not cached: it fails the same way again.
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

TEST_CASE("a failed unit that cannot be undone alone gives up its whole transaction", "[storage]") {
  testing_support::TempDir dir;
  auto database = Open(dir.path() + "/test.db", {"CREATE TABLE t (id TEXT PRIMARY KEY)"});
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

TEST_CASE("the schema allows one pending or completed death per patient", "[storage]") {
  // The transaction around BeginDeath already refuses a second death; the index is what holds
  // when code changes, so it is checked on its own.
  testing_support::TempDir dir;
  auto database = Open(dir.path() + "/patients.db", patients::Migrations());
  const auto insert_workflow = [&](const std::string& workflow_id, int state) {
    return database->InTransaction([&](Database::Session& session) -> absl::Status {
      return session.Exec(absl::StrCat(
          "INSERT INTO death_workflows (workflow_id, patient_id, time_of_death, cause, state, "
          "create_time, update_time) VALUES ('",
          workflow_id, "', 'p-1', 0, 'x', ", state, ", 0, 0)"));
    });
  };
  REQUIRE(database
              ->InTransaction([](Database::Session& session) {
                return session.Exec(
                    "INSERT INTO patients (patient_id, given_name, family_name, date_of_birth, "
                    "status, create_time, update_time) VALUES ('p-1', 'A', 'B', '1990-01-01', 1, "
                    "0, 0)");
              })
              .ok());
  REQUIRE(insert_workflow("w-compensated", 4).ok());
  REQUIRE(insert_workflow("w-pending", 1).ok());
  CHECK(insert_workflow("w-second-pending", 1).code() == absl::StatusCode::kAlreadyExists);
  CHECK(insert_workflow("w-completed", 2).code() == absl::StatusCode::kAlreadyExists);
  CHECK(insert_workflow("w-compensating", 3).ok());
}

TEST_CASE("reads do not wait for a transaction, and see only what is committed", "[storage]") {
  testing_support::TempDir dir;
  auto database = Open(dir.path() + "/test.db", {"CREATE TABLE t (id TEXT PRIMARY KEY)"});
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
  auto database = Open(dir.path() + "/test.db", {});
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

TEST_CASE("the death workflow finds a patient's workflows through an index", "[storage]") {
  // Without one, SQLite walked every completed workflow on each RecordDeath.
  testing_support::TempDir dir;
  auto database = Open(dir.path() + "/patients.db", patients::Migrations());
  std::string plan;
  REQUIRE(database
              ->WithSession([&](Database::Session& session) -> absl::Status {
                server_kit::Statement& explain = session.Prepare(
                    "EXPLAIN QUERY PLAN SELECT state, result FROM death_workflows "
                    "WHERE patient_id = ?1 AND state IN (1, 2, 3)");
                return explain.ForEachRow(
                    [&](const server_kit::Statement& row) { plan += row.ColumnText(3); });
              })
              .ok());
  CHECK_THAT(plan, Catch::Contains("workflows_by_patient (patient_id=?"));
}

TEST_CASE("morgue: one admission per patient, reopened for a new workflow after a cancel",
          "[storage][morgue]") {
  testing_support::TempDir dir;
  auto database = Open(dir.path() + "/morgue.db", morgue::Migrations());
  morgue::MorgueRepository repository(*database);
  const absl::Time now = absl::Now();
  auto first = repository.Admit("p", "w1", now, "cause", now);
  REQUIRE(first.ok());
  auto repeat = repository.Admit("p", "w2", now, "cause", now);
  REQUIRE(repeat.ok());
  CHECK(repeat->already_admitted);
  CHECK(repeat->admission.workflow_id() == "w1");
  CHECK(*repository.CancelWorkflow("p", "w2", now) == false);  // Not w2's admission.
  CHECK(*repository.CancelWorkflow("p", "w1", now) == true);
  CHECK(*repository.CancelWorkflow("p", "w1", now) == false);  // Idempotent.
  CHECK(repository.Admit("p", "w1", now, "cause", now).status().code() ==
        absl::StatusCode::kAborted);  // A late request of the undone workflow.
  auto reopened = repository.Admit("p", "w3", now, "cause", now);
  REQUIRE(reopened.ok());
  CHECK(reopened->admission.admission_id() == first->admission.admission_id());
  CHECK(reopened->admission.status() == hospital::morgue::v1::ADMITTED);
  auto page = repository.List("", 10, hospital::morgue::v1::ADMISSION_STATUS_UNSPECIFIED);
  CHECK(page->items.size() == 1);
}

TEST_CASE("morgue: releasing a body against every phase of a death", "[storage][morgue]") {
  // An operator releases the body in each phase of a synchronous death. A release is allowed
  // only once the death can no longer be undone (the workflow completed and confirmed the
  // admission), so an undo never meets a released body and a living patient's body is never
  // recorded as released.
  enum class Phase { kBefore, kPending, kCompensating, kCompleted, kUndone };
  struct Row {
    Phase phase;
    absl::StatusCode release;
  };
  for (const Row& row : {Row{Phase::kBefore, absl::StatusCode::kNotFound},
                         Row{Phase::kPending, absl::StatusCode::kFailedPrecondition},
                         Row{Phase::kCompensating, absl::StatusCode::kFailedPrecondition},
                         Row{Phase::kCompleted, absl::StatusCode::kOk},
                         Row{Phase::kUndone, absl::StatusCode::kFailedPrecondition}}) {
    INFO("phase " << static_cast<int>(row.phase));
    testing_support::TempDir dir;
    auto database = Open(dir.path() + "/morgue.db", morgue::Migrations());
    morgue::MorgueRepository repository(*database);
    const absl::Time now = absl::Now();
    std::string admission_id = "not-admitted-yet";
    const auto release = [&] {
      const auto released = repository.Release(admission_id, "Funeral Home", now);
      CHECK(released.status().code() == row.release);
      if (row.phase == Phase::kPending || row.phase == Phase::kCompensating) {
        CHECK(server_kit::ErrorReasonOf(released.status()) == morgue::kReasonAdmissionProvisional);
        CHECK_THAT(std::string(released.status().message()), Catch::Contains("\"w\""));
      }
    };
    if (row.phase == Phase::kBefore) release();
    const auto admitted = repository.Admit("p", "w", now, "cause", now);
    REQUIRE(admitted.ok());
    CHECK(admitted->admission.provisional());
    admission_id = admitted->admission.admission_id();
    if (row.phase == Phase::kPending) release();
    if (row.phase == Phase::kCompleted) {
      const auto confirmed = repository.Confirm("p", "w");
      REQUIRE(confirmed.ok());
      CHECK_FALSE(confirmed->admission.provisional());
      CHECK(repository.Confirm("p", "w")->already_confirmed);  // Idempotent.
      release();
      CHECK(repository.GetByPatient("p")->status() == hospital::morgue::v1::RELEASED);
      continue;
    }
    // The death fails: its undo is owed (compensating), then delivered (undone).
    if (row.phase == Phase::kCompensating) release();
    const auto undone = repository.CancelWorkflow("p", "w", now);
    REQUIRE(undone.ok());
    CHECK(*undone);  // The undo was never blocked by a release.
    if (row.phase == Phase::kUndone) release();
    CHECK(repository.GetByPatient("p")->status() == hospital::morgue::v1::CANCELLED);
    // A late confirmation of the undone workflow is refused and changes nothing.
    CHECK(repository.Confirm("p", "w").status().code() == absl::StatusCode::kFailedPrecondition);
    CHECK(repository.GetByPatient("p")->status() == hospital::morgue::v1::CANCELLED);
  }
}

TEST_CASE("morgue: confirming names what is wrong", "[storage][morgue]") {
  testing_support::TempDir dir;
  auto database = Open(dir.path() + "/morgue.db", morgue::Migrations());
  morgue::MorgueRepository repository(*database);
  const absl::Time now = absl::Now();
  CHECK(repository.Confirm("nobody", "w").status().code() == absl::StatusCode::kNotFound);
  REQUIRE(repository.Admit("p", "w1", now, "cause", now).ok());
  const auto other = repository.Confirm("p", "w2");
  CHECK(other.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(other.status().message()), Catch::Contains("provisional for workflow"));
  CHECK(repository.GetByPatient("p")->provisional());  // Unchanged.
  // An admission made from an event is final at once: nothing to confirm, releasable.
  AdmitFromEvent(*database, "q", "e1", now);
  CHECK_FALSE(repository.GetByPatient("q")->provisional());
  CHECK(repository.Confirm("q", "w9")->already_confirmed);
  CHECK(repository.Release(repository.GetByPatient("q")->admission_id(), "Home", now).ok());
}

TEST_CASE("morgue: a workflow admits one patient", "[storage][morgue]") {
  testing_support::TempDir dir;
  auto database = Open(dir.path() + "/morgue.db", morgue::Migrations());
  morgue::MorgueRepository repository(*database);
  const absl::Time now = absl::Now();
  REQUIRE(repository.Admit("p1", "w1", now, "cause", now).ok());
  const auto other = repository.Admit("p2", "w1", now, "cause", now);
  CHECK(other.status().code() == absl::StatusCode::kAlreadyExists);
  CHECK_THAT(std::string(other.status().message()), Catch::StartsWith("workflow_id:"));
  CHECK(repository.GetByPatient("p2").status().code() == absl::StatusCode::kNotFound);
  CHECK(repository.Admit("p1", "w1", now, "cause", now)->already_admitted);  // Still idempotent.
  // The schema holds it too, whatever the code above does.
  CHECK(database
            ->InTransaction([](Database::Session& session) {
              return session.Exec(
                  "INSERT INTO admissions (admission_id, patient_id, workflow_id, time_of_death, "
                  "cause, status, admit_time) VALUES ('a-x', 'p3', 'w1', 0, 'x', 1, 0)");
            })
            .code() == absl::StatusCode::kAlreadyExists);
}

TEST_CASE("appointments: cancel for a patient is idempotent and undoable", "[storage]") {
  testing_support::TempDir dir;
  auto database = Open(dir.path() + "/appointments.db", appointments::Migrations());
  appointments::AppointmentsRepository repository(*database);
  const absl::Time now = absl::Now();
  for (int i = 1; i <= 3; ++i) {
    REQUIRE(
        repository.Schedule({absl::StrCat("a", i), "p", now + absl::Hours(i), "Dr. Snow", ""}, now)
            .ok());
  }
  REQUIRE(repository.Schedule({"past", "p", now + absl::Minutes(1), "Dr. Snow", ""}, now).ok());
  const absl::Time later = now + absl::Minutes(30);  // "past" is now in the past.
  auto cancelled = repository.CancelForPatient("p", "w1", "deceased", true, later);
  REQUIRE(cancelled.ok());
  CHECK(cancelled->cancelled.size() == 3);
  auto again = repository.CancelForPatient("p", "w1", "deceased", true, later);
  CHECK(again->replayed);
  CHECK(again->cancelled.size() == 3);
  CHECK(repository.Schedule({"new", "p", later + absl::Hours(9), "Dr. Snow", ""}, later)
            .status()
            .code() == absl::StatusCode::kFailedPrecondition);
  auto restored = repository.RestoreForPatient("p", "w1", later);
  REQUIRE(restored.ok());
  CHECK(restored->size() == 3);
  CHECK(repository.Schedule({"new", "p", later + absl::Hours(9), "Dr. Snow", ""}, later).ok());
  CHECK(repository.CancelForPatient("p", "w1", "deceased", true, later).status().code() ==
        absl::StatusCode::kAborted);
  // An undo that arrives before its cancellation blocks the cancellation.
  CHECK(repository.RestoreForPatient("p", "w2", later)->empty());
  CHECK(repository.CancelForPatient("p", "w2", "deceased", true, later).status().code() ==
        absl::StatusCode::kAborted);
}

TEST_CASE("appointments: undoing a death restores only what it cancelled, and only the future",
          "[storage]") {
  testing_support::TempDir dir;
  auto database = Open(dir.path() + "/appointments.db", appointments::Migrations());
  appointments::AppointmentsRepository repository(*database);
  const absl::Time now = absl::Now();
  for (const char* id : {"soon", "kept", "user"}) {
    const absl::Duration from_now = std::string(id) == "soon" ? absl::Minutes(10) : absl::Hours(5);
    REQUIRE(repository.Schedule({id, "p", now + from_now, "Dr. Snow", ""}, now).ok());
  }
  REQUIRE(repository.CancelForPatient("p", "w1", "patient deceased", true, now)->cancelled.size() ==
          3);
  // While the death is pending, the patient's family cancels one appointment themselves.
  bool changed = false;
  const auto cancelled = repository.Cancel(changed, "user", "family request", now);
  REQUIRE(cancelled.ok());
  CHECK(changed);
  CHECK(cancelled->cancel_reason() == "family request");
  // The death is undone after "soon" has passed.
  const absl::Time later = now + absl::Minutes(20);
  const auto restored = repository.RestoreForPatient("p", "w1", later);
  REQUIRE(restored.ok());
  REQUIRE(restored->size() == 1);
  CHECK(restored->front().appointment_id() == "kept");
  CHECK(repository.Get("kept")->status() == hospital::appointments::v1::SCHEDULED);
  // The user's cancellation was acknowledged: it stands.
  CHECK(repository.Get("user")->status() == hospital::appointments::v1::CANCELLED);
  CHECK(repository.Get("user")->cancel_reason() == "family request");
  // The past is not booked again.
  CHECK(repository.Get("soon")->status() == hospital::appointments::v1::CANCELLED);
}

TEST_CASE("appointments: a patient's own writes against every phase of a death", "[storage]") {
  // In each phase of a death the patient cancels an appointment and tries to book another. A
  // cancellation the service acknowledged must stand whatever happens to the death afterwards;
  // booking is refused exactly while the patient is recorded as deceased.
  enum class Phase { kBefore, kPending, kCompleted, kUndone };
  struct Row {
    Phase phase;
    bool may_book;
  };
  for (const Row& row : {Row{Phase::kBefore, true}, Row{Phase::kPending, false},
                         Row{Phase::kCompleted, false}, Row{Phase::kUndone, true}}) {
    const int phase = static_cast<int>(row.phase);
    INFO("phase " << phase);
    testing_support::TempDir dir;
    auto database = Open(dir.path() + "/appointments.db", appointments::Migrations());
    appointments::AppointmentsRepository repository(*database);
    const absl::Time now = absl::Now();
    REQUIRE(repository.Schedule({"mine", "p", now + absl::Hours(5), "Dr. Snow", ""}, now).ok());
    // The patient's two writes, made in the phase under test.
    const auto act = [&] {
      bool changed = false;
      REQUIRE(repository.Cancel(changed, "mine", "patient's own reason", now).ok());
      const auto booked = repository.Schedule(
          {absl::StrCat("new-", phase), "p", now + absl::Hours(9), "Dr. Snow", ""}, now);
      CHECK(booked.ok() == row.may_book);
    };
    if (row.phase == Phase::kBefore) act();
    REQUIRE(repository.CancelForPatient("p", "w", "patient deceased", true, now).ok());
    if (row.phase == Phase::kPending || row.phase == Phase::kCompleted) act();
    // Pending ends in an undo here (the worst case for the patient's write); completed does not.
    if (row.phase != Phase::kCompleted) REQUIRE(repository.RestoreForPatient("p", "w", now).ok());
    if (row.phase == Phase::kUndone) act();
    const auto mine = repository.Get("mine");
    REQUIRE(mine.ok());
    CHECK(mine->status() == hospital::appointments::v1::CANCELLED);
    CHECK(mine->cancel_reason() == "patient's own reason");
  }
}

TEST_CASE("validation names the field", "[validation]") {
  CHECK(server_kit::ValidateId("patient_id", "").message() == "patient_id: is required");
  CHECK_THAT(std::string(server_kit::ValidateId("patient_id", "a b").message()),
             Catch::StartsWith("patient_id: must be 1 to 64"));
  CHECK(server_kit::ValidateId("patient_id", std::string(64, 'a')).ok());
  CHECK_FALSE(server_kit::ValidateId("patient_id", std::string(65, 'a')).ok());
  CHECK(server_kit::ValidateText("cause", "ok", 1, 10).ok());
  CHECK_FALSE(server_kit::ValidateText("cause", "\xff\xfe", 1, 10).ok());
  CHECK_FALSE(server_kit::ValidateText("cause", std::string("a\0b", 3), 1, 10).ok());
  CHECK(server_kit::ValidateText("cause", "a\tb\nc", 1, 10).ok());
  CHECK_THAT(std::string(server_kit::ValidateText("cause", "a\x7f", 1, 10).message()),
             Catch::Contains("control character at byte 1"));                    // DEL
  CHECK_FALSE(server_kit::ValidateText("cause", "a\xc2\x85", 1, 10).ok());       // U+0085 (C1)
  CHECK_FALSE(server_kit::ValidateText("cause", "\xc2\x9f", 1, 10).ok());        // U+009F (C1)
  CHECK(server_kit::ValidateText("cause", "caf\xc3\xa9 \xc2\xa0", 1, 10).ok());  // é, NBSP
  // A quoted value is cut at a character boundary: 60 ASCII bytes, then a 2-byte 'é' whose
  // second byte is the 62nd, where a cut at 61 bytes would fall.
  const std::string quoted =
      server_kit::Quote(std::string(60, 'a') + "\xc3\xa9" + std::string(10, 'b'));
  CHECK(quoted == "\"" + std::string(60, 'a') + "...\"");
  CHECK(server_kit::ValidateText("quoted", quoted, 1, 100).ok());  // Still valid UTF-8.
  CHECK(server_kit::DecodePageToken("page_token", "").value().empty());
  CHECK(server_kit::DecodePageToken("page_token", server_kit::EncodePageToken("p-7")).value() ==
        "p-7");
  CHECK(server_kit::DecodePageToken("page_token", "bm9wZQ").status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(server_kit::ValidatePageSize("page_size", 0).value() == 50);
  CHECK_FALSE(server_kit::ValidatePageSize("page_size", 501).ok());
}

}  // namespace
