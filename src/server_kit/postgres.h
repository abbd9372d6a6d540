// The PostgreSQL engine of the storage seam (database.h), on libpq: a bounded pool of
// connections shared by units of work and reads, statements prepared once per connection, and
// PostgreSQL's errors mapped to status codes in one place (PostgresErrorToStatus).
//
// Transactions. A unit of work runs in BEGIN ISOLATION LEVEL SERIALIZABLE ... COMMIT on one
// pooled connection, so that concurrent writers in several processes get what SQLite's single
// writer gives for free: the outcome of some order of the units, one at a time. When PostgreSQL
// cannot promise that (SQLSTATE 40001) or breaks a deadlock (40P01), the transaction is rolled
// back and the unit runs again from the start, after a short random pause, at most
// max_transaction_attempts times in all; beyond that the caller gets ABORTED. A read
// (WithSession) runs once in REPEATABLE READ READ ONLY: one snapshot, never a serialization
// failure. PostgreSQL groups the commits of concurrent connections into one WAL flush itself,
// so there is no group commit here.
//
// Connections. At most pool_size are open; a caller waits for one at most busy_timeout, then
// gets UNAVAILABLE. A connection that fails (the server went away, a failover) is closed and
// replaced by the next caller that needs one; libpq tries each host of a multi-host URI in turn,
// and `target_session_attrs=read-write` in the URI makes it skip a standby. A unit whose BEGIN
// fails on a dead connection runs again on a new one (nothing of it reached the server); one
// whose connection is lost later gets UNAVAILABLE, as its outcome is unknown to us.
//
// Durability. The caller hears OK only once COMMIT returned without a warning. When the
// server is configured for synchronous replication and a COMMIT's wait for the standby is cut
// short (statement_timeout, an administrator), PostgreSQL has committed locally and says so only
// in a warning: the unit then fails UNAVAILABLE, so that no caller is told "done" for a change
// that may exist on one node only.
//
// Credentials: the password is never part of a description, a log line or a status; a URI that
// holds one is refused (it would be on a command line), and it comes from
// DatabaseOptions::password or libpq's PGPASSFILE instead.
#ifndef HOSPITAL_SRC_SERVER_KIT_POSTGRES_H_
#define HOSPITAL_SRC_SERVER_KIT_POSTGRES_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/sync.h"
#include "server_kit/database.h"

namespace server_kit {

// Maps a PostgreSQL error to a status:
//   class 08 (connection), 57P01-57P03 (shutdown, crash, cannot connect now), 53300 (too many
//   connections), 25006 (read-only transaction: a standby), 55P03 (lock not available), 57014
//   (statement timeout), no SQLSTATE at all (libpq lost the connection)      UNAVAILABLE
//   53100 (disk full), 53200 (out of memory), 54xxx (program limits)       RESOURCE_EXHAUSTED
//   23505 (unique)                                                         ALREADY_EXISTS
//   23503 (foreign key)                                                    FAILED_PRECONDITION
//   other class 23, class 22 (data exception)                              INVALID_ARGUMENT
//   40001, 40P01 (serialization failure, deadlock), other class 40          ABORTED
//   XX001, XX002 (data or index corrupted)                                 DATA_LOSS
//   anything else (a syntax error, an undefined table: a bug here)         INTERNAL
// The message is safe to send to any client; `server_message` and `context` (the statement, or
// what was being done) go to the log, except for constraint violations, which the caller
// expects and rewords, and conflicts, which InTransaction retries (and counts).
absl::Status PostgresErrorToStatus(absl::string_view sqlstate, absl::string_view server_message,
                                   absl::string_view context);

// "postgresql host=h1,h2 port=5432,5432 dbname=d user=u": where `uri` points, without the
// password; INVALID_ARGUMENT (naming what is wrong, never echoing a password) if libpq cannot
// parse it or it holds a password.
absl::StatusOr<std::string> DescribePostgresUri(const std::string& uri);

class PostgresDatabase final : public Database {
 public:
  // Connects to `uri` (libpq's connection URI; one connection to check that it works), then
  // applies the migrations the database has not seen, one transaction each, under an advisory
  // lock so that processes starting together migrate once. The version is kept in the table
  // schema_version. Errors: INVALID_ARGUMENT for a bad URI, UNAVAILABLE with libpq's reason
  // (unreachable, wrong password, no such database) for a failed connection,
  // FAILED_PRECONDITION for a schema newer than `migrations`.
  static absl::StatusOr<std::unique_ptr<PostgresDatabase>> Open(
      const std::string& uri, const std::vector<std::string>& migrations,
      const DatabaseOptions& options = {});
  ~PostgresDatabase() override;

  Engine engine() const override { return Engine::kPostgres; }
  absl::Status InTransaction(const std::function<absl::Status(Session&)>& work) override;
  absl::Status InClaimingTransaction(const std::function<absl::Status(Session&)>& work) override;
  absl::Status WithSession(const std::function<absl::Status(Session&)>& work) override;
  absl::Status Ping() override;
  // A transaction that updates a row and commits: under synchronous replication it waits for
  // the standby, as every write does.
  absl::Status CheckWritable() override;
  absl::StatusOr<int> SchemaVersion() override;
  const std::string& description() const override { return description_; }
  StorageStats stats() const override;

  class Connection;  // One libpq connection and its prepared statements (postgres.cc).

 private:
  class Lease;
  PostgresDatabase(std::string uri, std::string description, const DatabaseOptions& options);

  // A pooled connection, opened if none is idle and the pool has room; UNAVAILABLE if none is
  // free within busy_timeout or a new one cannot be opened (libpq's reason is logged only).
  absl::StatusOr<std::unique_ptr<Connection>> Acquire();
  // Returns `connection` to the pool, or closes it if it is broken.
  void Release(std::unique_ptr<Connection> connection);
  absl::StatusOr<std::unique_ptr<Connection>> Connect();
  // InTransaction's work, in a transaction begun by `begin`.
  absl::Status RunTransaction(absl::string_view begin,
                              const std::function<absl::Status(Session&)>& work);
  absl::Status Migrate(const std::vector<std::string>& migrations);

  const std::string uri_;
  const std::string description_;
  const DatabaseOptions options_;

  mutable base::Mutex pool_mutex_;
  base::CondVar connection_freed_;
  std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(pool_mutex_);
  int open_ ABSL_GUARDED_BY(pool_mutex_) = 0;  // Idle, in use or being opened.
  int waiting_ ABSL_GUARDED_BY(pool_mutex_) = 0;

  std::atomic<std::int64_t> commits_{0};
  std::atomic<std::int64_t> retries_{0};
  std::atomic<std::int64_t> connection_failures_{0};
  std::atomic<std::int64_t> pool_timeouts_{0};
};

}  // namespace server_kit

#endif  // HOSPITAL_SRC_SERVER_KIT_POSTGRES_H_
