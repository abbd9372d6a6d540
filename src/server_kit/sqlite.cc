#include "server_kit/sqlite.h"

#include <sqlite3.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace server_kit {

absl::Status ToStatus(int sqlite_code, absl::string_view sqlite_message,
                      absl::string_view context) {
  const std::string message =
      absl::StrCat(context, ": ", sqlite_message, " (", sqlite3_errstr(sqlite_code), ")");
  switch (sqlite_code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
      return absl::UnavailableError(message);
    case SQLITE_FULL:
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
    default:
      return absl::InternalError(message);
  }
}

Statement::Statement(sqlite3* db, sqlite3_stmt* statement, std::string sql)
    : db_(db), statement_(statement), sql_(std::move(sql)) {}

Statement::~Statement() { sqlite3_finalize(statement_); }

void Statement::BindText(int index, absl::string_view value) {
  sqlite3_bind_text(statement_, index, value.data(), static_cast<int>(value.size()),
                    SQLITE_TRANSIENT);
}
void Statement::BindInt(int index, std::int64_t value) {
  sqlite3_bind_int64(statement_, index, value);
}
void Statement::BindBlob(int index, absl::string_view bytes) {
  sqlite3_bind_blob(statement_, index, bytes.data(), static_cast<int>(bytes.size()),
                    SQLITE_TRANSIENT);
}
void Statement::BindNull(int index) { sqlite3_bind_null(statement_, index); }
void Statement::BindTime(int index, absl::Time value) { BindInt(index, absl::ToUnixMicros(value)); }

absl::StatusOr<bool> Statement::Step() {
  const int code = sqlite3_step(statement_);
  if (code == SQLITE_ROW) return true;
  if (code == SQLITE_DONE) return false;
  return ToStatus(sqlite3_extended_errcode(db_), sqlite3_errmsg(db_), sql_);
}

absl::Status Statement::Run() {
  absl::StatusOr<bool> row = Step();
  if (!row.ok()) return row.status();
  return absl::OkStatus();
}

absl::Status Statement::ForEachRow(const std::function<void(const Statement&)>& read) {
  while (true) {
    absl::StatusOr<bool> row = Step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::OkStatus();
    read(*this);
  }
}

std::string Statement::ColumnText(int index) const {
  const unsigned char* text = sqlite3_column_text(statement_, index);
  if (text == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(text),
                     static_cast<std::size_t>(sqlite3_column_bytes(statement_, index)));
}
std::string Statement::ColumnBlob(int index) const {
  const void* bytes = sqlite3_column_blob(statement_, index);
  if (bytes == nullptr) return {};
  return std::string(static_cast<const char*>(bytes),
                     static_cast<std::size_t>(sqlite3_column_bytes(statement_, index)));
}
std::int64_t Statement::ColumnInt(int index) const {
  return sqlite3_column_int64(statement_, index);
}
bool Statement::ColumnIsNull(int index) const {
  return sqlite3_column_type(statement_, index) == SQLITE_NULL;
}
absl::Time Statement::ColumnTime(int index) const { return absl::FromUnixMicros(ColumnInt(index)); }
int Statement::changes() const { return sqlite3_changes(db_); }

void Statement::Reset() {
  sqlite3_reset(statement_);
  sqlite3_clear_bindings(statement_);
}

Statement& Database::Session::Prepare(absl::string_view sql) {
  database_.mutex_.AssertHeld();
  Statement& statement = database_.PrepareLocked(sql);
  used_.push_back(&statement);
  return statement;
}

Database::Session::~Session() {
  for (Statement* statement : used_) statement->Reset();
}

absl::Status Database::Session::Exec(absl::string_view sql) {
  database_.mutex_.AssertHeld();
  return database_.ExecLocked(sql);
}

Database::Database(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

Database::~Database() {
  {
    resilience::MutexLock lock(&mutex_);
    statements_.clear();  // Finalised before the connection closes.
  }
  sqlite3_close(db_);
}

absl::StatusOr<std::unique_ptr<Database>> Database::Open(const std::string& path,
                                                         const std::vector<std::string>& migrations,
                                                         const DatabaseOptions& options) {
  sqlite3* raw = nullptr;
  const int code =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (code != SQLITE_OK) {
    absl::Status status =
        ToStatus(code, raw ? sqlite3_errmsg(raw) : "cannot open", absl::StrCat("open ", path));
    sqlite3_close(raw);
    return status;
  }
  sqlite3_extended_result_codes(raw, 1);
  std::unique_ptr<Database> database(new Database(raw, path));
  {
    resilience::MutexLock lock(&database->mutex_);
    for (const std::string& pragma :
         {std::string("PRAGMA journal_mode=WAL"),
          absl::StrCat("PRAGMA busy_timeout=", absl::ToInt64Milliseconds(options.busy_timeout)),
          std::string("PRAGMA foreign_keys=ON"),
          absl::StrCat("PRAGMA synchronous=", options.synchronous)}) {
      if (absl::Status status = database->ExecLocked(pragma); !status.ok()) return status;
    }
  }
  if (absl::Status status = database->Migrate(migrations); !status.ok()) return status;
  return database;
}

Statement& Database::PrepareLocked(absl::string_view sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    sqlite3_stmt* raw = nullptr;
    const int code = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                        SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    if (code != SQLITE_OK) {
      // Every statement is a constant in the code: failing to prepare one is a programming error
      // that tests catch, not a condition to handle at run time.
      std::fprintf(stderr, "cannot prepare SQL: %s: %s\n", std::string(sql).c_str(),
                   sqlite3_errmsg(db_));
      std::abort();
    }
    it = statements_
             .emplace(std::string(sql), std::make_unique<Statement>(db_, raw, std::string(sql)))
             .first;
  }
  it->second->Reset();
  return *it->second;
}

absl::Status Database::ExecLocked(absl::string_view sql) {
  char* error = nullptr;
  const std::string text(sql);
  const int code = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &error);
  if (code == SQLITE_OK) return absl::OkStatus();
  absl::Status status = ToStatus(sqlite3_extended_errcode(db_), error ? error : "", text);
  sqlite3_free(error);
  return status;
}

absl::Status Database::InTransaction(const std::function<absl::Status(Session&)>& work) {
  resilience::MutexLock lock(&mutex_);
  // Prepared once and cached like every other statement: sqlite3_exec would parse them anew for
  // every transaction.
  const auto run = [this](absl::string_view sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    Statement& statement = PrepareLocked(sql);
    absl::Status status = statement.Run();
    statement.Reset();
    return status;
  };
  if (absl::Status status = run("BEGIN IMMEDIATE"); !status.ok()) return status;
  absl::Status status;
  {
    Session session(*this);  // Its statements are reset before COMMIT.
    status = work(session);
  }
  if (status.ok()) {
    status = run("COMMIT");
    if (status.ok()) return status;
  }
  // ROLLBACK may fail if SQLite already rolled back (e.g. after SQLITE_FULL); the original error
  // is the one to report.
  run("ROLLBACK").IgnoreError();
  return status;
}

absl::Status Database::WithSession(const std::function<absl::Status(Session&)>& work) {
  resilience::MutexLock lock(&mutex_);
  Session session(*this);
  return work(session);
}

absl::Status Database::Ping() {
  return WithSession([](Session& session) -> absl::Status {
    Statement& statement = session.Prepare("SELECT count(*) FROM sqlite_schema");
    absl::StatusOr<bool> row = statement.Step();
    return row.ok() ? absl::OkStatus() : row.status();
  });
}

absl::StatusOr<int> Database::SchemaVersion() {
  int version = 0;
  absl::Status status = WithSession([&](Session& session) -> absl::Status {
    Statement& statement = session.Prepare("PRAGMA user_version");
    absl::StatusOr<bool> row = statement.Step();
    if (!row.ok()) return row.status();
    version = static_cast<int>(statement.ColumnInt(0));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return version;
}

absl::Status Database::Migrate(const std::vector<std::string>& migrations) {
  absl::StatusOr<int> version = SchemaVersion();
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
