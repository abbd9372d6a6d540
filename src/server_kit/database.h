// The storage seam below every repository: a Database runs units of work in transactions, a
// Session hands out prepared Statements, and each engine (SQLite in sqlite.h, PostgreSQL in
// postgres.h) implements the three. Repositories see only this header.
//
//   ASSIGN_OR_RETURN(auto db, OpenDatabase("patients.db", kSchema));
//   absl::Status status = db->InTransaction([&](Database::Session& session) -> absl::Status {
//     Statement& insert = session.Prepare("INSERT INTO t(a) VALUES (?1)");
//     insert.BindText(1, "x");
//     return insert.Run();
//   });
//
// SQL is written once for both engines: parameters are `?N` (1-based; PostgreSQL's engine
// rewrites them to `$N`), times are INTEGER Unix microseconds (BIGINT in PostgreSQL's schema),
// and only what both engines accept is used (ON CONFLICT, partial indexes, no rowid). The
// schemas differ in their DDL, so each engine has its own list of migrations (Schema).
//
// What every engine guarantees to a unit of work:
//   - It is atomic, isolated as if it ran alone (SQLite: one writer; PostgreSQL: SERIALIZABLE),
//     and the caller hears OK only once its COMMIT is durable.
//   - It may run more than once: PostgreSQL runs it again after a serialization failure or a
//     deadlock (SQLSTATE 40001, 40P01), a bounded number of times, each time in a fresh
//     transaction. A unit therefore sets its outputs rather than appending to them, and has no
//     effect outside the database that a second run would repeat.
//   - Errors come back as statuses with the same meaning on both engines: UNAVAILABLE when the
//     storage cannot serve now (a lock timeout, a lost connection, a failover: retry later),
//     ALREADY_EXISTS for a unique key taken, FAILED_PRECONDITION for a missing referenced row,
//     INVALID_ARGUMENT for any other constraint, ABORTED when retrying could not get the
//     transaction through, RESOURCE_EXHAUSTED for a full disk. Their messages name the kind of
//     failure and never hold SQL, data, file paths or credentials; those go to the log.
#ifndef HOSPITAL_SRC_SERVER_KIT_DATABASE_H_
#define HOSPITAL_SRC_SERVER_KIT_DATABASE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server_kit/page.h"

namespace server_kit {

enum class Engine { kSqlite, kPostgres };
const char* EngineName(Engine engine);

// A prepared statement, reset on every use. Parameters are 1-based, columns 0-based; an unbound
// parameter is NULL.
class Statement {
 public:
  virtual ~Statement() = default;

  virtual void BindText(int index, absl::string_view value) = 0;
  virtual void BindInt(int index, std::int64_t value) = 0;
  virtual void BindBlob(int index, absl::string_view bytes) = 0;
  // Binds a time as Unix microseconds.
  void BindTime(int index, absl::Time value);

  // Advances to the next row: true if there is one, false when done, or an error status.
  virtual absl::StatusOr<bool> Step() = 0;
  // Runs a statement that returns no rows.
  absl::Status Run();
  // Steps through every row, handing each to `read`; returns the first error.
  absl::Status ForEachRow(const std::function<void(const Statement&)>& read);

  // Columns in the result (0 for a statement that returns none, or failed to prepare).
  virtual int ColumnCount() const = 0;
  virtual std::string ColumnText(int index) const = 0;
  virtual std::string ColumnBlob(int index) const = 0;
  virtual std::int64_t ColumnInt(int index) const = 0;
  virtual bool ColumnIsNull(int index) const = 0;
  absl::Time ColumnTime(int index) const;

  // Rows changed by the last Run.
  virtual int changes() const = 0;

  // Clears bindings and rewinds, ready for the next use; ends the statement's read.
  virtual void Reset() = 0;
};

// Each engine's migrations, in order: migration i brings the schema from version i to i + 1, in
// its own transaction. The two lists are kept side by side and reach the same tables, but are
// numbered apart (a PostgreSQL database starts at today's schema, not SQLite's history).
struct Schema {
  std::vector<std::string> sqlite;
  std::vector<std::string> postgres;
};

struct DatabaseOptions {
  // SQLite: how long a statement waits for a lock held by another connection before failing
  // UNAVAILABLE. PostgreSQL: how long a unit of work waits for a pooled connection.
  absl::Duration busy_timeout = absl::Seconds(5);
  // SQLite PRAGMA synchronous: "FULL" (durable even against power loss) or "NORMAL" (durable
  // against a crash of the process; may lose the last commits on power loss in WAL mode).
  std::string synchronous = "FULL";
  // SQLite: at most this many units of work share one transaction (group commit, sqlite.h).
  int max_group_size = 64;
  // PostgreSQL: connections kept open at most, shared by all units of work and reads.
  int pool_size = 8;
  // PostgreSQL: the password, when not in the URI or libpq's PGPASSFILE (--db_password_file).
  std::string password;
  // PostgreSQL: runs of one unit of work in all, the first included, when serialization
  // failures and deadlocks make it run again (postgres.cc says why 30).
  int max_transaction_attempts = 30;
  // PostgreSQL: how long opening a connection may take (libpq connect_timeout), unless the URI
  // says otherwise.
  absl::Duration connect_timeout = absl::Seconds(5);
  // PostgreSQL: longest a statement may run (statement_timeout) before it fails UNAVAILABLE.
  absl::Duration statement_timeout = absl::Seconds(10);
  // PostgreSQL: how the connections name themselves (application_name; the service's name).
  std::string application_name = "hospital";
};

// What an engine has done, for metrics. Counters only grow.
struct StorageStats {
  std::int64_t commits = 0;              // Write transactions committed (a group counts once).
  std::int64_t units_committed = 0;      // Units of work committed.
  std::int64_t transaction_retries = 0;  // Units run again after a serialization failure.
  std::int64_t connection_failures = 0;  // Connections that could not open or were lost.
  std::int64_t pool_timeouts = 0;        // Units refused: no connection free within the wait.
  int pool_size = 0;                     // Connections the engine may hold.
  int connections_open = 0;
  int connections_in_use = 0;
  int waiting = 0;  // Units and reads waiting for a connection.
};

class Database {
 public:
  // Access to a connection for one unit of work; obtained from InTransaction or WithSession.
  // Every statement prepared in a session is reset when the session ends.
  class Session {
   public:
    virtual Statement& Prepare(absl::string_view sql) = 0;
    // Runs SQL that takes no parameters (schema changes); several statements are allowed.
    virtual absl::Status Exec(absl::string_view sql) = 0;
    virtual Engine engine() const = 0;

   protected:
    Session() = default;
    ~Session() = default;
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
  };

  virtual ~Database() = default;

  virtual Engine engine() const = 0;
  // Runs `work` atomically in a transaction (see the guarantees above) and returns once it is
  // committed; if `work` returns an error, none of its changes are applied and that error is
  // returned. `work` must not call back into this Database.
  virtual absl::Status InTransaction(const std::function<absl::Status(Session&)>& work) = 0;
  // Runs `work` in a transaction meant for claiming rows that several processes work through,
  // and holding them while slow work (a publish to a broker) is done: PostgreSQL READ
  // COMMITTED, so that `SELECT ... FOR UPDATE SKIP LOCKED` skips the rows another claimer holds
  // and each statement sees the latest commits, instead of failing to serialize. Rows it
  // locked stay locked until it ends; rows it only read may change meanwhile. Committed as
  // InTransaction is; run again only after a deadlock. SQLite, whose one writer would be held
  // the whole time: UNIMPLEMENTED, and `work` does not run.
  virtual absl::Status InClaimingTransaction(const std::function<absl::Status(Session&)>& work) = 0;
  // Runs `work` in a read-only transaction: every statement in it sees the same snapshot, the
  // latest commit when it started. Writes fail. `work` runs once.
  virtual absl::Status WithSession(const std::function<absl::Status(Session&)>& work) = 0;

  // Checks that the database answers; for health checks.
  virtual absl::Status Ping() = 0;
  // Ping, and a transaction that writes and commits, so that a read-only, full or unreplicated
  // database is found by readiness and not only by the next request.
  virtual absl::Status CheckWritable() = 0;
  // The schema version: how many of the engine's migrations have run.
  virtual absl::StatusOr<int> SchemaVersion() = 0;
  // Where the database is, fit for logs: a file path, or host, port, database and user (never a
  // password).
  virtual const std::string& description() const = 0;
  virtual StorageStats stats() const = 0;
};

// Runs `work` in `session`, an exception it throws turned into INTERNAL: a unit that throws
// fails like one that returns an error, and leaves the engine (its connection, a group's
// leadership) as such a unit would. Engines run every unit through it.
absl::Status RunUnitOfWork(Database::Session& session,
                           const std::function<absl::Status(Database::Session&)>& work);

// Is `location` (a --db value) a PostgreSQL URI (postgresql:// or postgres://)? Anything else is
// a SQLite file: a path, or "sqlite:" followed by one.
bool IsPostgresLocation(absl::string_view location);

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

#endif  // HOSPITAL_SRC_SERVER_KIT_DATABASE_H_
