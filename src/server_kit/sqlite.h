// The SQLite engine of the storage seam (database.h): one writing connection whose transactions
// are group-committed, one read-only connection for WithSession, prepared statements cached per
// connection, schema migrations versioned with PRAGMA user_version, and SQLite errors mapped to
// status codes in one place (ToStatus).
//
// Thread-safe: each connection is used by one session at a time (serialised by a mutex); SQLite
// itself then needs no locking of its own. The database is opened in WAL mode with a busy
// timeout and foreign keys on.
//
// Group commit: with synchronous=FULL every COMMIT waits for the disk (an fsync), and while it
// waits the connection is held, so a busy service would spend its time queueing behind fsyncs.
// InTransaction therefore lets concurrent callers share one transaction: the first caller to
// find no transaction running becomes the leader, takes every unit of work queued meanwhile (up
// to max_group_size), runs each inside a SAVEPOINT of one BEGIN IMMEDIATE ... COMMIT, and wakes
// each caller when the COMMIT is durable. A unit that returns an error is rolled back to its
// savepoint and affects no other; if SQLite abandons the whole transaction (a full disk, an I/O
// error) or COMMIT fails, every unit in it fails with that error and none of them is applied.
// No caller is told "done" before its changes are committed. Each unit runs exactly once.
#ifndef HOSPITAL_SRC_SERVER_KIT_SQLITE_H_
#define HOSPITAL_SRC_SERVER_KIT_SQLITE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/sync.h"
#include "server_kit/database.h"

struct sqlite3;
struct sqlite3_stmt;

namespace server_kit {

// Maps a SQLite result code to a status, every primary code deliberately:
//   BUSY, LOCKED, IOERR, CANTOPEN, PROTOCOL, PERM, READONLY  UNAVAILABLE (storage cannot serve
//                                                             this now; readiness says so too)
//   FULL, NOMEM                                             RESOURCE_EXHAUSTED
//   CORRUPT, NOTADB                                         DATA_LOSS
//   CONSTRAINT: UNIQUE, PRIMARYKEY                          ALREADY_EXISTS
//               FOREIGNKEY                                  FAILED_PRECONDITION
//               any other (CHECK, NOT NULL, a trigger)      INVALID_ARGUMENT
//   TOOBIG                                                  INVALID_ARGUMENT
//   ABORT, SCHEMA                                           ABORTED (retry the transaction)
//   INTERRUPT                                               CANCELLED
//   anything else (ERROR, MISUSE, RANGE, MISMATCH, ...)     INTERNAL (a bug here)
// The message is safe to send to any client: it says what kind of storage failure it was and
// never holds SQL, file paths or data. `sqlite_message` and `context` (the statement, or what
// was being done) go to the log, with the code, except for constraint violations, which the
// caller expects and rewords.
absl::Status ToStatus(int sqlite_code, absl::string_view sqlite_message, absl::string_view context);

// A prepared SQLite statement.
class SqliteStatement final : public Statement {
 public:
  SqliteStatement(sqlite3* db, sqlite3_stmt* statement, std::string sql);
  // A statement that could not be prepared: binding and reading do nothing, and Step, Run and
  // ForEachRow return `prepare_error`, so the failure reaches the unit of work as a status.
  SqliteStatement(sqlite3* db, absl::Status prepare_error, std::string sql);
  ~SqliteStatement() override;
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;

  void BindText(int index, absl::string_view value) override;
  void BindInt(int index, std::int64_t value) override;
  void BindBlob(int index, absl::string_view bytes) override;
  absl::StatusOr<bool> Step() override;
  int ColumnCount() const override;
  std::string ColumnText(int index) const override;
  std::string ColumnBlob(int index) const override;
  std::int64_t ColumnInt(int index) const override;
  bool ColumnIsNull(int index) const override;
  int changes() const override;
  // Also ends the statement's read of the database.
  void Reset() override;

 private:
  sqlite3* db_;
  sqlite3_stmt* statement_;  // Null when preparing failed.
  const absl::Status prepare_error_;
  const std::string sql_;
};

// One SQLite connection with its prepared statements, cached for its life. Used by one thread
// at a time: callers hold mutex() (SQLite is opened without its own locking).
class SqliteConnection final {
 public:
  // Opens `path` with sqlite3_open_v2 `flags` (SQLITE_OPEN_NOMUTEX is added) and runs `pragmas`.
  static absl::StatusOr<std::unique_ptr<SqliteConnection>> Open(
      const std::string& path, int flags, const std::vector<std::string>& pragmas);
  ~SqliteConnection();
  SqliteConnection(const SqliteConnection&) = delete;
  SqliteConnection& operator=(const SqliteConnection&) = delete;

  base::Mutex& mutex() ABSL_LOCK_RETURNED(mutex_) { return mutex_; }
  // The cached statement for `sql`, prepared on first use, reset. If SQLite cannot prepare it
  // (a busy schema lock, a full disk, an error in the SQL), the statement returned fails every
  // step with that error and is not cached, so the next use prepares it again; it stays valid
  // until DropFailedStatements.
  SqliteStatement& Prepare(absl::string_view sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Frees the statements that failed to prepare (when no session refers to them any more).
  void DropFailedStatements() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Runs SQL that takes no parameters, parsing it every time (schema changes, pragmas).
  absl::Status Exec(absl::string_view sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Runs a parameterless statement through the statement cache (BEGIN, SAVEPOINT, COMMIT...).
  absl::Status RunCached(absl::string_view sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // A transaction is open (SQLite is not in autocommit mode).
  bool TransactionOpen() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

 private:
  explicit SqliteConnection(sqlite3* db) : db_(db) {}

  sqlite3* const db_;
  base::Mutex mutex_;
  std::map<std::string, std::unique_ptr<SqliteStatement>, std::less<>> statements_
      ABSL_GUARDED_BY(mutex_);
  std::vector<std::unique_ptr<SqliteStatement>> failed_statements_ ABSL_GUARDED_BY(mutex_);
};

// A session on one SQLite connection. Every statement prepared in it is reset when it ends, so
// that no half-read SELECT keeps a read transaction open (which would stop checkpoints from ever
// restarting the WAL, and the WAL file would grow without bound).
class SqliteSession final : public Database::Session {
 public:
  explicit SqliteSession(SqliteConnection& connection) : connection_(connection) {}
  ~SqliteSession();

  Statement& Prepare(absl::string_view sql) override;
  // Also runs pragmas.
  absl::Status Exec(absl::string_view sql) override;
  Engine engine() const override { return Engine::kSqlite; }

 private:
  SqliteConnection& connection_;
  absl::InlinedVector<SqliteStatement*, 8> used_;
};

// A service's database in one SQLite file: a writing connection whose transactions are
// group-committed (above), and a read-only connection for WithSession, so that reads never wait
// for a commit's fsync (WAL mode lets readers and the writer run at once, each reader on a
// snapshot).
class SqliteDatabase final : public Database {
 public:
  // Opens (creating if needed) the database at `path` and applies the migrations it has not
  // yet seen: migration i brings user_version from i to i + 1, each in its own transaction.
  static absl::StatusOr<std::unique_ptr<SqliteDatabase>> Open(
      const std::string& path, const std::vector<std::string>& migrations,
      const DatabaseOptions& options = {});
  // Opens the existing database of another process (a batch job writing into a service's
  // database, say): no migrations (its owner runs them) and no file created, UNAVAILABLE
  // (SQLite's CANTOPEN) if there is none. Its schema is whatever the owner last migrated it to.
  static absl::StatusOr<std::unique_ptr<SqliteDatabase>> OpenExisting(
      const std::string& path, const DatabaseOptions& options = {});
  ~SqliteDatabase() override;

  Engine engine() const override { return Engine::kSqlite; }
  // `work` runs on whichever thread leads the group, exactly once.
  absl::Status InTransaction(const std::function<absl::Status(Session&)>& work) override;
  // UNIMPLEMENTED: SQLite has no row locks, and one slow unit would hold its only writer.
  absl::Status InClaimingTransaction(const std::function<absl::Status(Session&)>& work) override;
  // On the read-only connection; writes fail (SQLITE_READONLY).
  absl::Status WithSession(const std::function<absl::Status(Session&)>& work) override;
  absl::Status Ping() override;
  // The write rewrites the schema version with its own value.
  absl::Status CheckWritable() override;
  // PRAGMA user_version.
  absl::StatusOr<int> SchemaVersion() override;
  const std::string& description() const override { return path_; }
  StorageStats stats() const override;

  const std::string& path() const { return path_; }
  // Transactions committed by InTransaction so far (a group counts once).
  std::int64_t commits() const { return commits_.load(std::memory_order_relaxed); }
  // Units of work committed by InTransaction so far; over commits(), the mean group size.
  std::int64_t units_committed() const { return units_committed_.load(std::memory_order_relaxed); }
  // Units of work waiting for the running group to finish; for tests.
  int queued() const;

 private:
  struct QueuedUnit;
  SqliteDatabase(std::unique_ptr<SqliteConnection> writer, std::string path, int max_group_size);
  // Runs every unit of `group`, in order, in as few transactions as SQLite allows, and sets
  // each unit's status.
  void RunGroup(const std::vector<QueuedUnit*>& group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(writer_->mutex());
  // Runs one unit's work in a session, turning an exception into INTERNAL.
  static absl::Status RunUnit(SqliteConnection& writer,
                              const std::function<absl::Status(Session&)>& work)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(writer.mutex());
  // Open and OpenExisting: `migrations` null runs none.
  static absl::StatusOr<std::unique_ptr<SqliteDatabase>> OpenWith(
      const std::string& path, bool create, const std::vector<std::string>* migrations,
      const DatabaseOptions& options);
  static absl::StatusOr<int> SchemaVersionOf(SqliteConnection& connection);
  absl::Status Migrate(const std::vector<std::string>& migrations);

  const std::unique_ptr<SqliteConnection> writer_;
  // Opened once the migrations have run.
  std::unique_ptr<SqliteConnection> reader_;
  const std::string path_;
  const int max_group_size_;
  std::atomic<std::int64_t> commits_{0};
  std::atomic<std::int64_t> units_committed_{0};

  mutable base::Mutex queue_mutex_;
  std::deque<QueuedUnit*> queue_ ABSL_GUARDED_BY(queue_mutex_);
  // A leader is running a group; arriving units wait to be taken or to lead the next.
  bool leader_active_ ABSL_GUARDED_BY(queue_mutex_) = false;
};

// The path a --db value names when it is a SQLite location: "sqlite:PATH" and
// "sqlite://PATH" give PATH, anything else is the path itself.
std::string SqlitePath(absl::string_view location);

}  // namespace server_kit

#endif  // HOSPITAL_SRC_SERVER_KIT_SQLITE_H_
