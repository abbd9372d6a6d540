// A small SQLite layer: one connection per service database, prepared statements only, schema
// migrations versioned with PRAGMA user_version, and SQLite errors mapped to status codes in one
// place (ToStatus).
//
//   ASSIGN_OR_RETURN(auto db, Database::Open(path, {kMigrationV1, kMigrationV2}));
//   absl::Status status = db->InTransaction([&](Database::Session& session) -> absl::Status {
//     Statement& insert = session.Prepare("INSERT INTO t(a) VALUES (?1)");
//     insert.BindText(1, "x");
//     return insert.Run();
//   });
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
// No caller is told "done" before its changes are committed.
#ifndef HOSPITAL_SRC_SERVER_KIT_SQLITE_H_
#define HOSPITAL_SRC_SERVER_KIT_SQLITE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/sync.h"
#include "server_kit/page.h"

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

// A prepared statement, reset on every use. Parameters are 1-based, columns 0-based.
class Statement final {
 public:
  Statement(sqlite3* db, sqlite3_stmt* statement, std::string sql);
  // A statement that could not be prepared: binding and reading do nothing, and Step, Run and
  // ForEachRow return `prepare_error`, so the failure reaches the unit of work as a status.
  Statement(sqlite3* db, absl::Status prepare_error, std::string sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  void BindText(int index, absl::string_view value);
  void BindInt(int index, std::int64_t value);
  void BindBlob(int index, absl::string_view bytes);
  // Binds a time as Unix microseconds.
  void BindTime(int index, absl::Time value);

  // Advances to the next row: true if there is one, false when done, or an error status.
  absl::StatusOr<bool> Step();
  // Runs a statement that returns no rows.
  absl::Status Run();
  // Steps through every row, handing each to `read`; returns the first error.
  absl::Status ForEachRow(const std::function<void(const Statement&)>& read);

  // Columns in the result (0 for a statement that returns none, or failed to prepare).
  int ColumnCount() const;
  std::string ColumnText(int index) const;
  std::string ColumnBlob(int index) const;
  std::int64_t ColumnInt(int index) const;
  bool ColumnIsNull(int index) const;
  absl::Time ColumnTime(int index) const;

  // Rows changed by the last Run.
  int changes() const;

  // Clears bindings and rewinds, ready for the next use; ends the statement's read of the
  // database.
  void Reset();

 private:
  sqlite3* db_;
  sqlite3_stmt* statement_;  // Null when preparing failed.
  const absl::Status prepare_error_;
  const std::string sql_;
};

struct DatabaseOptions {
  // How long a statement waits for a lock held by another connection before failing BUSY.
  absl::Duration busy_timeout = absl::Seconds(5);
  // PRAGMA synchronous: "FULL" (durable even against power loss) or "NORMAL" (durable against
  // a crash of the process; may lose the last commits on power loss in WAL mode).
  std::string synchronous = "FULL";
  // At most this many units of work share one transaction (see group commit above).
  int max_group_size = 64;
};

// One SQLite connection with its prepared statements, cached for its life. Used by one thread
// at a time: callers hold mutex() (SQLite is opened without its own locking).
class Connection final {
 public:
  // Opens `path` with sqlite3_open_v2 `flags` (SQLITE_OPEN_NOMUTEX is added) and runs `pragmas`.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const std::string& path, int flags,
                                                          const std::vector<std::string>& pragmas);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  base::Mutex& mutex() ABSL_LOCK_RETURNED(mutex_) { return mutex_; }
  // The cached statement for `sql`, prepared on first use, reset. If SQLite cannot prepare it
  // (a busy schema lock, a full disk, an error in the SQL), the statement returned fails every
  // step with that error and is not cached, so the next use prepares it again; it stays valid
  // until DropFailedStatements.
  Statement& Prepare(absl::string_view sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Frees the statements that failed to prepare (when no session refers to them any more).
  void DropFailedStatements() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Runs SQL that takes no parameters, parsing it every time (schema changes, pragmas).
  absl::Status Exec(absl::string_view sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Runs a parameterless statement through the statement cache (BEGIN, SAVEPOINT, COMMIT...).
  absl::Status RunCached(absl::string_view sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // A transaction is open (SQLite is not in autocommit mode).
  bool TransactionOpen() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

 private:
  explicit Connection(sqlite3* db) : db_(db) {}

  sqlite3* const db_;
  base::Mutex mutex_;
  std::map<std::string, std::unique_ptr<Statement>, std::less<>> statements_
      ABSL_GUARDED_BY(mutex_);
  std::vector<std::unique_ptr<Statement>> failed_statements_ ABSL_GUARDED_BY(mutex_);
};

// A service's database: a writing connection whose transactions are group-committed (above),
// and a read-only connection for WithSession, so that reads never wait for a commit's fsync
// (WAL mode lets readers and the writer run at once, each reader on a snapshot).
class Database final {
 public:
  // Access to a connection for one unit of work; obtained from Database::WithSession or
  // InTransaction. Every statement prepared in a session is reset when the session ends, so
  // that no half-read SELECT keeps a read transaction open (which would stop checkpoints from
  // ever restarting the WAL, and the WAL file would grow without bound).
  class Session final {
   public:
    Statement& Prepare(absl::string_view sql);
    // Runs SQL that takes no parameters (schema changes, pragmas).
    absl::Status Exec(absl::string_view sql);

   private:
    friend class Database;
    explicit Session(Connection& connection) : connection_(connection) {}
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    Connection& connection_;
    absl::InlinedVector<Statement*, 8> used_;
  };

  // Opens (creating if needed) the database at `path` and applies the migrations it has not
  // yet seen: migration i brings user_version from i to i + 1, each in its own transaction.
  static absl::StatusOr<std::unique_ptr<Database>> Open(const std::string& path,
                                                        const std::vector<std::string>& migrations,
                                                        const DatabaseOptions& options = {});
  // Opens the existing database of another process (a batch job writing into a service's
  // database, say): no migrations (its owner runs them) and no file created, UNAVAILABLE
  // (SQLite's CANTOPEN) if there is none. Its schema is whatever the owner last migrated it to.
  static absl::StatusOr<std::unique_ptr<Database>> OpenExisting(
      const std::string& path, const DatabaseOptions& options = {});
  ~Database();

  // Runs `work` atomically inside a transaction, possibly shared with other callers' units (see
  // group commit above), and returns once it is committed; if `work` returns an error, none of
  // its changes are applied and that error is returned. `work` runs on whichever thread leads
  // the group, exactly once, and must not call back into this Database.
  absl::Status InTransaction(const std::function<absl::Status(Session&)>& work);
  // Runs `work` in a read transaction on the read-only connection: every statement in it sees
  // the same snapshot, the latest commit when it started. Writes fail (SQLITE_READONLY).
  absl::Status WithSession(const std::function<absl::Status(Session&)>& work);

  // Checks that the database answers; for health checks.
  absl::Status Ping();
  // Ping, and a write that commits (it rewrites the schema version with its own value), so that
  // a read-only or full database is found by readiness and not only by the next request.
  absl::Status CheckWritable();
  // The schema version (PRAGMA user_version).
  absl::StatusOr<int> SchemaVersion();
  const std::string& path() const { return path_; }
  // Transactions committed by InTransaction so far (a group counts once).
  std::int64_t commits() const { return commits_.load(std::memory_order_relaxed); }
  // Units of work committed by InTransaction so far; over commits(), the mean group size.
  std::int64_t units_committed() const { return units_committed_.load(std::memory_order_relaxed); }
  // Units of work waiting for the running group to finish; for tests.
  int queued() const;

 private:
  struct QueuedUnit;
  Database(std::unique_ptr<Connection> writer, std::string path, int max_group_size);
  // Runs every unit of `group`, in order, in as few transactions as SQLite allows, and sets
  // each unit's status.
  void RunGroup(const std::vector<QueuedUnit*>& group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(writer_->mutex());
  // Runs one unit's work in a session, turning an exception into INTERNAL.
  static absl::Status RunUnit(Connection& writer, const std::function<absl::Status(Session&)>& work)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(writer.mutex());
  // Open and OpenExisting: `migrations` null runs none.
  static absl::StatusOr<std::unique_ptr<Database>> OpenWith(
      const std::string& path, bool create, const std::vector<std::string>* migrations,
      const DatabaseOptions& options);
  static absl::StatusOr<int> SchemaVersionOf(Connection& connection);
  absl::Status Migrate(const std::vector<std::string>& migrations);

  const std::unique_ptr<Connection> writer_;
  // Opened once the migrations have run.
  std::unique_ptr<Connection> reader_;
  const std::string path_;
  const int max_group_size_;
  std::atomic<std::int64_t> commits_{0};
  std::atomic<std::int64_t> units_committed_{0};

  mutable base::Mutex queue_mutex_;
  std::deque<QueuedUnit*> queue_ ABSL_GUARDED_BY(queue_mutex_);
  // A leader is running a group; arriving units wait to be taken or to lead the next.
  bool leader_active_ ABSL_GUARDED_BY(queue_mutex_) = false;
};

// Keyset pagination:
//
//   Statement& select = session.Prepare("SELECT ... WHERE id > ?1 ORDER BY id LIMIT ?2");
//   select.BindText(1, after_id);
//   ASSIGN_OR_RETURN(page, ReadPage<Admission>(select, /*limit_parameter=*/2, limit,
//       ReadAdmission, [](const Admission& last) { return last.admission_id(); }));
//
// Binds LIMIT (`limit_parameter`) to `limit` + 1, reads the rows with `read(row) -> Item`, and
// keeps `limit` of them: the extra row only tells whether another page exists, and then
// `position_of(last item) -> std::string` is where it starts.
template <typename Item, typename Read, typename PositionOf>
absl::StatusOr<Page<Item>> ReadPage(Statement& select, int limit_parameter, int limit, Read read,
                                    PositionOf position_of) {
  select.BindInt(limit_parameter, limit + 1);
  Page<Item> page;
  if (absl::Status status =
          select.ForEachRow([&](const Statement& row) { page.items.push_back(read(row)); });
      !status.ok()) {
    return status;
  }
  if (static_cast<int>(page.items.size()) > limit) {
    page.items.pop_back();
    page.next_position = position_of(page.items.back());
  }
  return page;
}

}  // namespace server_kit

#endif  // HOSPITAL_SRC_SERVER_KIT_SQLITE_H_
