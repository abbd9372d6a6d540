#include "server_kit/sqlite.h"

#include <sqlite3.h>

#include <algorithm>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/status.h"
#include "server_kit/log.h"

namespace server_kit {

absl::Status ToStatus(int sqlite_code, absl::string_view sqlite_message,
                      absl::string_view context) {
  // A constraint violation is an answer the caller expected and rewords (a duplicate id); every
  // other failure is the operator's to see, with what the client is not told.
  if ((sqlite_code & 0xff) != SQLITE_CONSTRAINT) {
    Log(LogLevel::kWarning, "sqlite_error",
        {{"code", absl::StrCat(sqlite_code)},
         {"error", std::string(sqlite_message)},
         {"context", std::string(context)}});
  }
  // sqlite3_errstr names the kind of failure ("database is locked") and nothing else.
  const std::string message = absl::StrCat("storage: ", sqlite3_errstr(sqlite_code));
  switch (sqlite_code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
    case SQLITE_PERM:
    case SQLITE_READONLY:
      return absl::UnavailableError(message);
    case SQLITE_FULL:
    case SQLITE_NOMEM:
      return absl::ResourceExhaustedError(message);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(message);
    case SQLITE_CONSTRAINT:
      switch (sqlite_code) {
        case SQLITE_CONSTRAINT_UNIQUE:
        case SQLITE_CONSTRAINT_PRIMARYKEY:
          return absl::AlreadyExistsError(message);
        case SQLITE_CONSTRAINT_FOREIGNKEY:
          return absl::FailedPreconditionError(message);
        default:
          return absl::InvalidArgumentError(message);
      }
    case SQLITE_TOOBIG:
      return absl::InvalidArgumentError(message);
    case SQLITE_ABORT:
    case SQLITE_SCHEMA:
      return absl::AbortedError(message);
    case SQLITE_INTERRUPT:
      return absl::CancelledError(message);
    default:
      return absl::InternalError(message);
  }
}

SqliteStatement::SqliteStatement(sqlite3* db, sqlite3_stmt* statement, std::string sql)
    : db_(db), statement_(statement), sql_(std::move(sql)) {}

SqliteStatement::SqliteStatement(sqlite3* db, absl::Status prepare_error, std::string sql)
    : db_(db),
      statement_(nullptr),
      prepare_error_(std::move(prepare_error)),
      sql_(std::move(sql)) {}

SqliteStatement::~SqliteStatement() { sqlite3_finalize(statement_); }

// Binding and reading a statement that failed to prepare do nothing: its first Step reports
// the failure.
void SqliteStatement::BindText(int index, absl::string_view value) {
  if (statement_ == nullptr) return;
  sqlite3_bind_text(statement_, index, value.data(), static_cast<int>(value.size()),
                    SQLITE_TRANSIENT);
}
void SqliteStatement::BindInt(int index, std::int64_t value) {
  if (statement_ == nullptr) return;
  sqlite3_bind_int64(statement_, index, value);
}
void SqliteStatement::BindBlob(int index, absl::string_view bytes) {
  if (statement_ == nullptr) return;
  sqlite3_bind_blob(statement_, index, bytes.data(), static_cast<int>(bytes.size()),
                    SQLITE_TRANSIENT);
}

absl::StatusOr<bool> SqliteStatement::Step() {
  if (statement_ == nullptr) return prepare_error_;
  const int code = sqlite3_step(statement_);
  if (code == SQLITE_ROW) return true;
  if (code == SQLITE_DONE) return false;
  return ToStatus(sqlite3_extended_errcode(db_), sqlite3_errmsg(db_), sql_);
}

int SqliteStatement::ColumnCount() const {
  return statement_ == nullptr ? 0 : sqlite3_column_count(statement_);
}

std::string SqliteStatement::ColumnText(int index) const {
  const unsigned char* text = sqlite3_column_text(statement_, index);
  if (text == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(text),
                     static_cast<std::size_t>(sqlite3_column_bytes(statement_, index)));
}
std::string SqliteStatement::ColumnBlob(int index) const {
  const void* bytes = sqlite3_column_blob(statement_, index);
  if (bytes == nullptr) return {};
  return std::string(static_cast<const char*>(bytes),
                     static_cast<std::size_t>(sqlite3_column_bytes(statement_, index)));
}
std::int64_t SqliteStatement::ColumnInt(int index) const {
  return sqlite3_column_int64(statement_, index);
}
bool SqliteStatement::ColumnIsNull(int index) const {
  return sqlite3_column_type(statement_, index) == SQLITE_NULL;
}
int SqliteStatement::changes() const { return sqlite3_changes(db_); }

void SqliteStatement::Reset() {
  if (statement_ == nullptr) return;
  sqlite3_reset(statement_);
  sqlite3_clear_bindings(statement_);
}

absl::StatusOr<std::unique_ptr<SqliteConnection>> SqliteConnection::Open(
    const std::string& path, int flags, const std::vector<std::string>& pragmas) {
  sqlite3* raw = nullptr;
  const int code = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (code != SQLITE_OK) {
    absl::Status status =
        ToStatus(code, raw ? sqlite3_errmsg(raw) : "cannot open", absl::StrCat("open ", path));
    sqlite3_close(raw);
    return status;
  }
  sqlite3_extended_result_codes(raw, 1);
  std::unique_ptr<SqliteConnection> connection(new SqliteConnection(raw));
  base::MutexLock lock(&connection->mutex());
  for (const std::string& pragma : pragmas) {
    if (absl::Status status = connection->Exec(pragma); !status.ok()) return status;
  }
  return connection;
}

SqliteConnection::~SqliteConnection() {
  {
    base::MutexLock lock(&mutex_);
    statements_.clear();  // Finalised before the connection closes.
  }
  sqlite3_close(db_);
}

SqliteStatement& SqliteConnection::Prepare(absl::string_view sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    sqlite3_stmt* raw = nullptr;
    const int code = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                        SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    if (code != SQLITE_OK) {
      // A statement of the code that SQLite cannot prepare now: the schema is locked, the disk
      // is full, or (a bug that tests catch) the SQL is wrong. The unit of work fails with the
      // error instead of the process; nothing is cached, so the next use tries again.
      sqlite3_finalize(raw);
      failed_statements_.push_back(std::make_unique<SqliteStatement>(
          db_,
          ToStatus(sqlite3_extended_errcode(db_), sqlite3_errmsg(db_),
                   absl::StrCat("prepare ", sql)),
          std::string(sql)));
      return *failed_statements_.back();
    }
    it = statements_
             .emplace(std::string(sql),
                      std::make_unique<SqliteStatement>(db_, raw, std::string(sql)))
             .first;
  }
  it->second->Reset();
  return *it->second;
}

void SqliteConnection::DropFailedStatements() { failed_statements_.clear(); }

absl::Status SqliteConnection::Exec(absl::string_view sql) {
  char* error = nullptr;
  const std::string text(sql);
  const int code = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &error);
  if (code == SQLITE_OK) return absl::OkStatus();
  absl::Status status = ToStatus(sqlite3_extended_errcode(db_), error ? error : "", text);
  sqlite3_free(error);
  return status;
}

absl::Status SqliteConnection::RunCached(absl::string_view sql) {
  SqliteStatement& statement = Prepare(sql);
  absl::Status status = statement.Run();
  statement.Reset();
  return status;
}

bool SqliteConnection::TransactionOpen() { return sqlite3_get_autocommit(db_) == 0; }

Statement& SqliteSession::Prepare(absl::string_view sql) {
  connection_.mutex().AssertHeld();
  SqliteStatement& statement = connection_.Prepare(sql);
  used_.push_back(&statement);
  return statement;
}

SqliteSession::~SqliteSession() {
  for (SqliteStatement* statement : used_) statement->Reset();
  connection_.mutex().AssertHeld();
  connection_.DropFailedStatements();
}

absl::Status SqliteSession::Exec(absl::string_view sql) {
  connection_.mutex().AssertHeld();
  return connection_.Exec(sql);
}

SqliteDatabase::SqliteDatabase(std::unique_ptr<SqliteConnection> writer, std::string path,
                               int max_group_size)
    : writer_(std::move(writer)),
      path_(std::move(path)),
      max_group_size_(std::max(1, max_group_size)) {}

SqliteDatabase::~SqliteDatabase() = default;

absl::StatusOr<std::unique_ptr<SqliteDatabase>> SqliteDatabase::OpenExisting(
    const std::string& path, const DatabaseOptions& options) {
  return OpenWith(path, /*create=*/false, nullptr, options);
}

absl::StatusOr<std::unique_ptr<SqliteDatabase>> SqliteDatabase::Open(
    const std::string& path, const std::vector<std::string>& migrations,
    const DatabaseOptions& options) {
  return OpenWith(path, /*create=*/true, &migrations, options);
}

absl::StatusOr<std::unique_ptr<SqliteDatabase>> SqliteDatabase::OpenWith(
    const std::string& path, bool create, const std::vector<std::string>* migrations,
    const DatabaseOptions& options) {
  const std::string busy_timeout =
      absl::StrCat("PRAGMA busy_timeout=", absl::ToInt64Milliseconds(options.busy_timeout));
  absl::StatusOr<std::unique_ptr<SqliteConnection>> writer =
      SqliteConnection::Open(path, SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0),
                             {"PRAGMA journal_mode=WAL", busy_timeout, "PRAGMA foreign_keys=ON",
                              absl::StrCat("PRAGMA synchronous=", options.synchronous)});
  if (!writer.ok()) return writer.status();
  std::unique_ptr<SqliteDatabase> database(
      new SqliteDatabase(*std::move(writer), path, options.max_group_size));
  if (migrations != nullptr) {
    if (absl::Status status = database->Migrate(*migrations); !status.ok()) return status;
  }
  // After the migrations, so that it never sees a schema older than this binary's.
  absl::StatusOr<std::unique_ptr<SqliteConnection>> reader =
      SqliteConnection::Open(path, SQLITE_OPEN_READONLY, {busy_timeout});
  if (!reader.ok()) return reader.status();
  database->reader_ = *std::move(reader);
  return database;
}

struct SqliteDatabase::QueuedUnit {
  explicit QueuedUnit(const std::function<absl::Status(Session&)>& unit_work) : work(unit_work) {}
  const std::function<absl::Status(Session&)>& work;
  // Written by the leader running the unit, read by its caller once `done`.
  absl::Status status;
  // Under queue_mutex_: the unit's group has finished, or the unit's caller is to lead the next.
  bool done = false;
  bool lead = false;
  base::CondVar wake;
};

absl::Status SqliteDatabase::InTransaction(const std::function<absl::Status(Session&)>& work) {
  QueuedUnit unit(work);
  {
    base::MutexLock lock(&queue_mutex_);
    queue_.push_back(&unit);
    if (leader_active_) {
      while (!unit.done && !unit.lead) unit.wake.Wait(&queue_mutex_);
      if (unit.done) return unit.status;
    }
    // Leading: this unit is at the front of the queue (a leader hands over to the front, and a
    // caller finding no leader found the queue empty), so it is in the group taken next.
    leader_active_ = true;
  }
  std::vector<QueuedUnit*> group;
  {
    base::MutexLock lock(&queue_mutex_);
    while (!queue_.empty() && static_cast<int>(group.size()) < max_group_size_) {
      group.push_back(queue_.front());
      queue_.pop_front();
    }
  }
  {
    base::MutexLock lock(&writer_->mutex());
    RunGroup(group);
  }
  base::MutexLock lock(&queue_mutex_);
  // Signalled under the lock: a woken caller returns and destroys its unit, which it cannot do
  // before it holds the lock itself.
  for (QueuedUnit* member : group) {
    member->done = true;
    member->wake.Signal();
  }
  if (queue_.empty()) {
    leader_active_ = false;
  } else {
    queue_.front()->lead = true;
    queue_.front()->wake.Signal();
  }
  return unit.status;
}

absl::Status SqliteDatabase::RunUnit(SqliteConnection& writer,
                                     const std::function<absl::Status(Session&)>& work) {
  SqliteSession session(writer);  // Its statements are reset before the unit is released.
  // A unit that throws must not take the group, and the leadership that every later writer
  // waits for, with it.
  return RunUnitOfWork(session, work);
}

void SqliteDatabase::RunGroup(const std::vector<QueuedUnit*>& group) {
  SqliteConnection& writer = *writer_;
  writer.mutex().AssertHeld();  // The same lock as writer_->mutex(), which the analysis cannot see.
  std::size_t next = 0;
  while (next < group.size()) {
    const std::size_t first = next;
    if (absl::Status begun = writer.RunCached("BEGIN IMMEDIATE"); !begun.ok()) {
      for (std::size_t i = first; i < group.size(); ++i) group[i]->status = begun;
      return;
    }
    bool abandoned = false;
    for (; next < group.size() && !abandoned; ++next) {
      QueuedUnit& unit = *group[next];
      unit.status = writer.RunCached("SAVEPOINT unit");
      if (unit.status.ok()) unit.status = RunUnit(writer, unit.work);
      if (unit.status.ok() && writer.TransactionOpen()) {
        unit.status = writer.RunCached("RELEASE unit");
      }
      if (!writer.TransactionOpen()) {
        // SQLite rolled the whole transaction back (a full disk, an I/O error...): the units
        // already run in it are lost with it.
        abandoned = true;
        if (unit.status.ok()) {
          unit.status = absl::InternalError("a unit of work ended its group's transaction");
        }
        for (std::size_t i = first; i < next; ++i) {
          if (group[i]->status.ok()) {
            group[i]->status = absl::Status(
                unit.status.code(),
                absl::StrCat("rolled back with its transaction: ", unit.status.message()));
          }
        }
      } else if (!unit.status.ok()) {
        // A unit that failed is undone alone; if that is impossible (its savepoint is gone), its
        // writes cannot be told from the others', and the whole transaction is given up.
        if (absl::Status undone = writer.RunCached("ROLLBACK TO unit"); !undone.ok()) {
          writer.RunCached("ROLLBACK").IgnoreError();
          abandoned = true;
          for (std::size_t i = first; i < next; ++i) {
            if (group[i]->status.ok()) {
              group[i]->status = absl::AbortedError(absl::StrCat(
                  "rolled back with its transaction: a unit sharing it could not be undone "
                  "alone (",
                  undone.message(), ")"));
            }
          }
        } else {
          writer.RunCached("RELEASE unit").IgnoreError();
        }
      }
    }
    if (abandoned) continue;  // The rest of the group gets a transaction of its own.
    if (absl::Status committed = writer.RunCached("COMMIT"); !committed.ok()) {
      // ROLLBACK may fail if SQLite already rolled back; the COMMIT error is the one to report.
      writer.RunCached("ROLLBACK").IgnoreError();
      for (std::size_t i = first; i < next; ++i) {
        if (group[i]->status.ok()) group[i]->status = committed;
      }
      continue;
    }
    commits_.fetch_add(1, std::memory_order_relaxed);
    std::int64_t committed = 0;
    for (std::size_t i = first; i < next; ++i) committed += group[i]->status.ok() ? 1 : 0;
    units_committed_.fetch_add(committed, std::memory_order_relaxed);
  }
}

int SqliteDatabase::queued() const {
  base::MutexLock lock(&queue_mutex_);
  return static_cast<int>(queue_.size());
}

absl::Status SqliteDatabase::InClaimingTransaction(const std::function<absl::Status(Session&)>&) {
  return absl::UnimplementedError(
      "storage: claiming rows (SELECT ... FOR UPDATE SKIP LOCKED) needs PostgreSQL; SQLite has "
      "one writer and no row locks");
}

absl::Status SqliteDatabase::WithSession(const std::function<absl::Status(Session&)>& work) {
  SqliteConnection& reader = *reader_;
  base::MutexLock lock(&reader.mutex());
  if (absl::Status begun = reader.RunCached("BEGIN"); !begun.ok()) return begun;
  absl::Status status;
  {
    SqliteSession session(reader);  // Its statements are reset before the read transaction ends.
    status = work(session);
  }
  if (reader.TransactionOpen()) reader.RunCached("COMMIT").IgnoreError();  // Nothing to keep.
  return status;
}

absl::Status SqliteDatabase::Ping() {
  return WithSession([](Session& session) -> absl::Status {
    Statement& statement = session.Prepare("SELECT count(*) FROM sqlite_schema");
    absl::StatusOr<bool> row = statement.Step();
    return row.ok() ? absl::OkStatus() : row.status();
  });
}

absl::Status SqliteDatabase::CheckWritable() {
  RETURN_IF_ERROR(Ping());
  ASSIGN_OR_RETURN(const int version, SchemaVersion());
  return InTransaction([version](Session& session) {
    return session.Exec(absl::StrCat("PRAGMA user_version=", version));
  });
}

absl::StatusOr<int> SqliteDatabase::SchemaVersion() { return SchemaVersionOf(*reader_); }

StorageStats SqliteDatabase::stats() const {
  StorageStats stats;
  stats.commits = commits();
  stats.units_committed = units_committed();
  stats.pool_size = 2;  // The writer and the reader, open for the database's life.
  stats.connections_open = 2;
  stats.waiting = queued();
  return stats;
}

std::string SqlitePath(absl::string_view location) {
  if (absl::ConsumePrefix(&location, "sqlite:")) absl::ConsumePrefix(&location, "//");
  return std::string(location);
}

absl::StatusOr<int> SqliteDatabase::SchemaVersionOf(SqliteConnection& connection) {
  base::MutexLock lock(&connection.mutex());
  SqliteStatement& statement = connection.Prepare("PRAGMA user_version");
  absl::StatusOr<bool> row = statement.Step();
  const int version = row.ok() ? static_cast<int>(statement.ColumnInt(0)) : 0;
  statement.Reset();
  if (!row.ok()) return row.status();
  return version;
}

absl::Status SqliteDatabase::Migrate(const std::vector<std::string>& migrations) {
  absl::StatusOr<int> version = SchemaVersionOf(*writer_);
  if (!version.ok()) return version.status();
  if (*version > static_cast<int>(migrations.size())) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": schema version ", *version, " is newer than this binary knows (",
                     migrations.size(), "); refusing to run an older binary against it"));
  }
  for (int next = *version; next < static_cast<int>(migrations.size()); ++next) {
    absl::Status status = InTransaction([&](Session& session) -> absl::Status {
      if (absl::Status applied = session.Exec(migrations[static_cast<std::size_t>(next)]);
          !applied.ok()) {
        return applied;
      }
      return session.Exec(absl::StrCat("PRAGMA user_version=", next + 1));
    });
    if (!status.ok()) {
      return absl::Status(status.code(),
                          absl::StrCat(path_, ": migration ", next + 1, ": ", status.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace server_kit
