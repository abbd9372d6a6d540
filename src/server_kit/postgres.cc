#include "server_kit/postgres.h"

#include <libpq-fe.h>
#include <poll.h>

#include <cerrno>

#include <algorithm>
#include <exception>
#include <map>
#include <random>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/status.h"
#include "server_kit/log.h"

namespace server_kit {
namespace {

constexpr Oid kByteaOid = 17;
constexpr Oid kBoolOid = 16;
// pg_advisory_lock key held while migrating ("hosp").
constexpr std::int64_t kMigrationLockKey = 0x686f7370;

// The status for a failure with no SQLSTATE: libpq's own (a lost or refused connection).
absl::Status ConnectionLost(absl::string_view libpq_message, absl::string_view context) {
  Log(LogLevel::kWarning, "postgres_connection_error",
      {{"error", std::string(absl::StripTrailingAsciiWhitespace(libpq_message))},
       {"context", std::string(context)}});
  return absl::UnavailableError("storage: the database connection failed");
}

// `sql` with each ?N parameter written $N, as PostgreSQL wants them, outside quoted strings,
// quoted names and comments; `count` is the highest N.
std::string ToDollarParameters(absl::string_view sql, int& count) {
  std::string out;
  out.reserve(sql.size());
  count = 0;
  for (std::size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (c == '\'' || c == '"') {
      const std::size_t end = sql.find(c, i + 1);
      const std::size_t stop = end == absl::string_view::npos ? sql.size() : end + 1;
      absl::StrAppend(&out, sql.substr(i, stop - i));
      i = stop - 1;
    } else if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      const std::size_t end = sql.find('\n', i);
      const std::size_t stop = end == absl::string_view::npos ? sql.size() : end;
      absl::StrAppend(&out, sql.substr(i, stop - i));
      i = stop - 1;
    } else if (c == '?' && i + 1 < sql.size() && absl::ascii_isdigit(sql[i + 1])) {
      std::size_t j = i + 1;
      int number = 0;
      while (j < sql.size() && absl::ascii_isdigit(sql[j])) number = number * 10 + (sql[j++] - '0');
      count = std::max(count, number);
      absl::StrAppend(&out, "$", number);
      i = j - 1;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

absl::Status PostgresErrorToStatus(absl::string_view sqlstate, absl::string_view server_message,
                                   absl::string_view context) {
  const bool constraint = absl::StartsWith(sqlstate, "23");
  // Conflicts are normal under SERIALIZABLE and retried; they are counted, not logged.
  const bool conflict = sqlstate == "40001" || sqlstate == "40P01";
  if (!constraint && !conflict) {
    Log(LogLevel::kWarning, "postgres_error",
        {{"sqlstate", std::string(sqlstate)},
         {"error", std::string(absl::StripTrailingAsciiWhitespace(server_message))},
         {"context", std::string(context)}});
  }
  const auto message = [sqlstate](absl::string_view kind) {
    return absl::StrCat("storage: ", kind, " (SQLSTATE ", sqlstate, ")");
  };
  if (sqlstate.empty()) return absl::UnavailableError("storage: the database connection failed");
  if (absl::StartsWith(sqlstate, "08") || sqlstate == "57P01" || sqlstate == "57P02" ||
      sqlstate == "57P03" || sqlstate == "53300") {
    return absl::UnavailableError(message("the database is not reachable"));
  }
  if (sqlstate == "25006") return absl::UnavailableError(message("the database is read-only"));
  if (sqlstate == "55P03") return absl::UnavailableError(message("a lock was not available"));
  if (sqlstate == "57014") return absl::UnavailableError(message("a statement timed out"));
  if (sqlstate == "53100" || sqlstate == "53200" || absl::StartsWith(sqlstate, "54")) {
    return absl::ResourceExhaustedError(message("the database is out of space or memory"));
  }
  if (sqlstate == "23505") return absl::AlreadyExistsError(message("a unique key is taken"));
  if (sqlstate == "23503") {
    return absl::FailedPreconditionError(message("a referenced row is missing"));
  }
  if (constraint) return absl::InvalidArgumentError(message("a constraint failed"));
  if (absl::StartsWith(sqlstate, "22")) return absl::InvalidArgumentError(message("bad data"));
  if (sqlstate == "40001" || sqlstate == "40P01") {
    return absl::AbortedError(message("the transaction conflicted with a concurrent one"));
  }
  if (absl::StartsWith(sqlstate, "40")) return absl::AbortedError(message("rolled back"));
  if (sqlstate == "XX001" || sqlstate == "XX002") {
    return absl::DataLossError(message("the database is corrupt"));
  }
  return absl::InternalError(message("the statement failed"));
}

absl::StatusOr<std::string> DescribePostgresUri(const std::string& uri) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(uri.c_str(), &error);
  if (options == nullptr) {
    // libpq's reason may quote the part it could not read, which may be a password: it is not
    // repeated.
    PQfreemem(error);
    return absl::InvalidArgumentError(
        "not a PostgreSQL connection URI libpq can read "
        "(postgresql://[user@]host[:port][,host[:port]...]/dbname[?param=value...])");
  }
  std::map<std::string, std::string> values;
  for (PQconninfoOption* option = options; option->keyword != nullptr; ++option) {
    if (option->val != nullptr && option->val[0] != '\0') values[option->keyword] = option->val;
  }
  PQconninfoFree(options);
  if (values.count("password") != 0) {
    return absl::InvalidArgumentError(
        "holds a password, which would show on the command line: give it in a password file "
        "(--db_password_file, or libpq's PGPASSFILE) instead");
  }
  if (auto port = values.find("port"); port != values.end()) {
    for (absl::string_view one : absl::StrSplit(port->second, ',')) {
      int number = 0;
      if (!absl::SimpleAtoi(one, &number) || number < 1 || number > 65535) {
        return absl::InvalidArgumentError(
            absl::StrCat("not a PostgreSQL connection URI libpq can use: port \"", one,
                         "\" is not a port number"));
      }
    }
  }
  std::vector<std::string> parts = {"postgresql"};
  for (const char* keyword : {"host", "hostaddr", "port", "dbname", "user"}) {
    if (auto it = values.find(keyword); it != values.end()) {
      parts.push_back(absl::StrCat(keyword, "=", it->second));
    }
  }
  return absl::StrJoin(parts, " ");
}

// A statement prepared on one connection, by name, the first time it runs there. Results are
// read whole (our statements read a few rows at most, bounded by LIMIT) in text format.
class PostgresStatement final : public Statement {
 public:
  PostgresStatement(PostgresDatabase::Connection& connection, std::string name, std::string sql,
                    std::string original_sql, int parameter_count)
      : connection_(connection),
        name_(std::move(name)),
        sql_(std::move(sql)),
        original_sql_(std::move(original_sql)),
        values_(static_cast<std::size_t>(parameter_count)),
        bound_(static_cast<std::size_t>(parameter_count), false),
        formats_(static_cast<std::size_t>(parameter_count), 0) {}
  ~PostgresStatement() override { PQclear(result_); }

  void BindText(int index, absl::string_view value) override { Bind(index, value, 0); }
  void BindInt(int index, std::int64_t value) override { Bind(index, absl::StrCat(value), 0); }
  // Binary, so that the bytes need no escaping; the server knows the parameter is bytea from
  // the column it goes to.
  void BindBlob(int index, absl::string_view bytes) override { Bind(index, bytes, 1); }

  absl::StatusOr<bool> Step() override;
  int ColumnCount() const override { return result_ == nullptr ? 0 : PQnfields(result_); }
  std::string ColumnText(int index) const override {
    if (!HasValue(index)) return {};
    return std::string(PQgetvalue(result_, row_, index),
                       static_cast<std::size_t>(PQgetlength(result_, row_, index)));
  }
  std::string ColumnBlob(int index) const override;
  std::int64_t ColumnInt(int index) const override;
  bool ColumnIsNull(int index) const override { return !HasValue(index); }
  int changes() const override { return changes_; }
  void Reset() override {
    PQclear(result_);
    result_ = nullptr;
    executed_ = false;
    row_ = -1;
    rows_ = 0;
    changes_ = 0;
    std::fill(bound_.begin(), bound_.end(), false);
  }

  const std::string& original_sql() const { return original_sql_; }

 private:
  void Bind(int index, absl::string_view value, int format) {
    if (index < 1 || index > static_cast<int>(values_.size())) return;  // As SQLite: ignored.
    const auto i = static_cast<std::size_t>(index - 1);
    values_[i].assign(value.data(), value.size());
    bound_[i] = true;
    formats_[i] = format;
  }
  bool HasValue(int index) const {
    return result_ != nullptr && row_ >= 0 && row_ < rows_ && index >= 0 &&
           index < PQnfields(result_) && !PQgetisnull(result_, row_, index);
  }
  absl::Status Execute();

  PostgresDatabase::Connection& connection_;
  const std::string name_;
  const std::string sql_;
  const std::string original_sql_;
  bool prepared_ = false;
  std::vector<std::string> values_;
  std::vector<bool> bound_;
  std::vector<int> formats_;
  PGresult* result_ = nullptr;
  bool executed_ = false;
  int row_ = -1;
  int rows_ = 0;
  int changes_ = 0;
};

// One libpq connection: its prepared statements, and what happened in the current transaction.
class PostgresDatabase::Connection final {
 public:
  // Every round trip gives up after `answer_timeout`: the connection is then abandoned.
  Connection(PGconn* connection, absl::Duration answer_timeout)
      : connection_(connection), answer_timeout_(answer_timeout) {
    PQsetNoticeReceiver(connection_, &Connection::ReceiveNotice, this);
  }
  ~Connection() {
    statements_.clear();
    PQfinish(connection_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  PGconn* raw() { return connection_; }
  bool broken() const { return abandoned_ || PQstatus(connection_) != CONNECTION_OK; }
  bool in_failed_transaction() const { return PQtransactionStatus(connection_) == PQTRANS_INERROR; }

  // The cached statement for `sql`, reset.
  PostgresStatement& Prepare(absl::string_view sql) {
    auto it = statements_.find(sql);
    if (it == statements_.end()) {
      int parameters = 0;
      std::string translated = ToDollarParameters(sql, parameters);
      auto statement =
          std::make_unique<PostgresStatement>(*this, absl::StrCat("s", statements_.size()),
                                              std::move(translated), std::string(sql), parameters);
      it = statements_.emplace(std::string(sql), std::move(statement)).first;
    }
    it->second->Reset();
    return *it->second;
  }

  // Runs parameterless SQL (several statements allowed) with the simple query protocol.
  absl::Status Exec(absl::string_view sql) {
    const std::string text(sql);
    PGresult* result = nullptr;
    absl::Status status = RoundTrip(PQsendQuery(connection_, text.c_str()), text, result);
    if (status.ok()) status = Check(result, text);
    PQclear(result);
    return status;
  }

  // Waits for the answer to what `sent` (PQsend*'s result) sent, at most answer_timeout_, and
  // sets `result` to it: the first error, else the last result. UNAVAILABLE if nothing could be
  // sent or no answer came in time; the connection is then abandoned, as it may be in any state
  // (a server frozen, a commit waiting for a standby that never comes; the server ends such a
  // wait when it finds its client gone, client_connection_check_interval).
  absl::Status RoundTrip(int sent, absl::string_view context, PGresult*& result) {
    result = nullptr;
    if (sent == 0) return ConnectionLost(PQerrorMessage(connection_), context);
    const absl::Time deadline = absl::Now() + answer_timeout_;
    while (true) {
      while (PQisBusy(connection_) == 0) {
        PGresult* next = PQgetResult(connection_);
        if (next == nullptr) return absl::OkStatus();
        if (result != nullptr && PQresultStatus(result) == PGRES_FATAL_ERROR) {
          PQclear(next);
        } else {
          PQclear(result);
          result = next;
        }
      }
      const absl::Duration left = deadline - absl::Now();
      pollfd socket{PQsocket(connection_), POLLIN, 0};
      const int ready =
          left <= absl::ZeroDuration()
              ? 0
              : poll(&socket, 1, static_cast<int>(absl::ToInt64Milliseconds(left) + 1));
      if (ready == 0) {
        abandoned_ = true;
        Log(LogLevel::kWarning, "postgres_no_answer",
            {{"timeout", absl::FormatDuration(answer_timeout_)},
             {"context", std::string(context)}});
        PQclear(result);
        result = nullptr;
        return absl::UnavailableError(absl::StrCat("storage: the database did not answer within ",
                                                   absl::FormatDuration(answer_timeout_)));
      }
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0 || PQconsumeInput(connection_) == 0) {
        PQclear(result);
        result = nullptr;
        return ConnectionLost(PQerrorMessage(connection_), context);
      }
    }
  }

  // The status of `result` (which may be null), noting a serialization failure.
  absl::Status Check(const PGresult* result, absl::string_view context) {
    const ExecStatusType code = result == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(result);
    if (code == PGRES_COMMAND_OK || code == PGRES_TUPLES_OK) return absl::OkStatus();
    const char* sqlstate =
        result == nullptr ? nullptr : PQresultErrorField(result, PG_DIAG_SQLSTATE);
    if (sqlstate == nullptr || broken()) {
      return ConnectionLost(PQerrorMessage(connection_), context);
    }
    if (std::string_view(sqlstate) == "40001" || std::string_view(sqlstate) == "40P01") {
      serialization_failed_ = true;
    }
    const char* message = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
    return PostgresErrorToStatus(sqlstate, message == nullptr ? "" : message, context);
  }

  // Starts noting what happens to one transaction.
  void BeginAttempt() {
    serialization_failed_ = false;
    warned_ = false;
  }
  bool serialization_failed() const { return serialization_failed_; }
  // The server sent a WARNING since the last ClearWarnings (COMMIT's warning that the wait for
  // the synchronous standby was cut short is the one that matters).
  bool warned() const { return warned_; }
  void ClearWarnings() { warned_ = false; }

 private:
  static void ReceiveNotice(void* self, const PGresult* notice) {
    const char* severity = PQresultErrorField(notice, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (severity != nullptr && std::string_view(severity) == "WARNING") {
      static_cast<Connection*>(self)->warned_ = true;
      const char* message = PQresultErrorField(notice, PG_DIAG_MESSAGE_PRIMARY);
      Log(LogLevel::kWarning, "postgres_warning",
          {{"error", message == nullptr ? "" : std::string(message)}});
    }
  }

  PGconn* const connection_;
  const absl::Duration answer_timeout_;
  bool abandoned_ = false;
  std::map<std::string, std::unique_ptr<PostgresStatement>, std::less<>> statements_;
  bool serialization_failed_ = false;
  bool warned_ = false;
};

absl::Status PostgresStatement::Execute() {
  PGconn* raw = connection_.raw();
  if (!prepared_) {
    PGresult* prepared = nullptr;
    absl::Status status = connection_.RoundTrip(
        PQsendPrepare(raw, name_.c_str(), sql_.c_str(), 0, nullptr), original_sql_, prepared);
    if (status.ok()) status = connection_.Check(prepared, absl::StrCat("prepare ", original_sql_));
    PQclear(prepared);
    if (!status.ok()) return status;
    prepared_ = true;
  }
  absl::InlinedVector<const char*, 12> values;
  absl::InlinedVector<int, 12> lengths;
  for (std::size_t i = 0; i < values_.size(); ++i) {
    values.push_back(bound_[i] ? values_[i].c_str() : nullptr);
    lengths.push_back(static_cast<int>(values_[i].size()));
  }
  executed_ = true;
  absl::Status sent = connection_.RoundTrip(
      PQsendQueryPrepared(raw, name_.c_str(), static_cast<int>(values.size()), values.data(),
                          lengths.data(), formats_.data(), /*resultFormat=*/0),
      original_sql_, result_);
  if (!sent.ok()) return sent;
  if (absl::Status status = connection_.Check(result_, original_sql_); !status.ok()) {
    PQclear(result_);
    result_ = nullptr;
    return status;
  }
  rows_ = PQresultStatus(result_) == PGRES_TUPLES_OK ? PQntuples(result_) : 0;
  int changed = 0;
  changes_ = absl::SimpleAtoi(PQcmdTuples(result_), &changed) ? changed : 0;
  return absl::OkStatus();
}

absl::StatusOr<bool> PostgresStatement::Step() {
  if (!executed_) RETURN_IF_ERROR(Execute());
  if (row_ < rows_) ++row_;
  return row_ < rows_;
}

std::string PostgresStatement::ColumnBlob(int index) const {
  if (!HasValue(index)) return {};
  if (PQftype(result_, index) != kByteaOid) return ColumnText(index);
  std::size_t length = 0;
  unsigned char* bytes = PQunescapeBytea(
      reinterpret_cast<const unsigned char*>(PQgetvalue(result_, row_, index)), &length);
  if (bytes == nullptr) return {};
  std::string blob(reinterpret_cast<const char*>(bytes), length);
  PQfreemem(bytes);
  return blob;
}

std::int64_t PostgresStatement::ColumnInt(int index) const {
  if (!HasValue(index)) return 0;
  const char* text = PQgetvalue(result_, row_, index);
  if (PQftype(result_, index) == kBoolOid) return text[0] == 't' ? 1 : 0;
  std::int64_t value = 0;
  return absl::SimpleAtoi(text, &value) ? value : 0;
}

namespace {

// A session on one connection; its statements are reset when it ends.
class PostgresSession final : public Database::Session {
 public:
  explicit PostgresSession(PostgresDatabase::Connection& connection) : connection_(connection) {}
  ~PostgresSession() {
    for (PostgresStatement* statement : used_) statement->Reset();
  }

  Statement& Prepare(absl::string_view sql) override {
    PostgresStatement& statement = connection_.Prepare(sql);
    used_.push_back(&statement);
    return statement;
  }
  absl::Status Exec(absl::string_view sql) override { return connection_.Exec(sql); }
  Engine engine() const override { return Engine::kPostgres; }

 private:
  PostgresDatabase::Connection& connection_;
  absl::InlinedVector<PostgresStatement*, 8> used_;
};

// Runs `work` in a session, turning an exception into INTERNAL.
absl::Status RunWork(PostgresDatabase::Connection& connection,
                     const std::function<absl::Status(Database::Session&)>& work) {
  PostgresSession session(connection);
  return RunUnitOfWork(session, work);
}

// A pause before running a conflicting transaction again: random, so that two units that
// conflicted do not meet again in step, and growing with the attempt (up to 2^attempt ms).
void PauseBeforeRetry(int attempt) {
  thread_local std::minstd_rand random(std::random_device{}());
  const int ceiling_us = 1000 << std::min(attempt, 6);
  absl::SleepFor(absl::Microseconds(std::uniform_int_distribution<int>(0, ceiling_us)(random)));
}

// How one run of a unit ended.
enum class AttemptOutcome {
  kDone,        // Committed, or failed for good: the status says which.
  kConflicted,  // A serialization failure or deadlock: run it again.
  kNotStarted,  // BEGIN failed on a dead connection: nothing reached the server.
};

AttemptOutcome RunAttempt(PostgresDatabase::Connection& connection, absl::string_view begin,
                          const std::function<absl::Status(Database::Session&)>& work,
                          absl::Status& status) {
  connection.BeginAttempt();
  status = connection.Exec(begin);
  if (!status.ok()) {
    return connection.broken() ? AttemptOutcome::kNotStarted : AttemptOutcome::kDone;
  }
  status = RunWork(connection, work);
  if (status.ok() && connection.in_failed_transaction()) {
    // A statement failed and the unit went on as if it had not: nothing of it can commit.
    status = absl::InternalError("storage: a statement of the unit failed and was ignored");
  }
  if (!status.ok() || connection.serialization_failed()) {
    if (!connection.broken()) connection.Exec("ROLLBACK").IgnoreError();
    return connection.serialization_failed() && !connection.broken() ? AttemptOutcome::kConflicted
                                                                     : AttemptOutcome::kDone;
  }
  connection.ClearWarnings();
  status = connection.Exec("COMMIT");
  if (!status.ok()) {
    if (connection.serialization_failed()) return AttemptOutcome::kConflicted;
    if (absl::IsUnavailable(status)) {
      status = absl::UnavailableError(
          absl::StrCat(status.message(),
                       " at COMMIT: whether the unit committed is not known (a commit "
                       "waiting for the synchronous standby, a server gone)"));
    }
    return AttemptOutcome::kDone;
  }
  if (connection.warned()) {
    status = absl::UnavailableError(
        "storage: the commit was not confirmed by the synchronous standby; it may exist on one "
        "node only");
  }
  return AttemptOutcome::kDone;
}

}  // namespace

PostgresDatabase::PostgresDatabase(std::string uri, std::string description,
                                   const DatabaseOptions& options)
    : uri_(std::move(uri)), description_(std::move(description)), options_(options) {}

PostgresDatabase::~PostgresDatabase() {
  base::MutexLock lock(&pool_mutex_);
  idle_.clear();
}

absl::StatusOr<std::unique_ptr<PostgresDatabase>> PostgresDatabase::Open(
    const std::string& uri, const std::vector<std::string>& migrations,
    const DatabaseOptions& options) {
  ASSIGN_OR_RETURN(std::string description, DescribePostgresUri(uri));
  std::unique_ptr<PostgresDatabase> database(
      new PostgresDatabase(uri, std::move(description), options));
  RETURN_IF_ERROR(database->Migrate(migrations));
  return database;
}

absl::StatusOr<std::unique_ptr<PostgresDatabase::Connection>> PostgresDatabase::Connect() {
  const std::string connect_timeout =
      absl::StrCat(std::max<std::int64_t>(2, absl::ToInt64Seconds(options_.connect_timeout)));
  // Earlier keywords are defaults the URI may override; the password, after it, is ours.
  std::vector<const char*> keywords = {"connect_timeout", "application_name",    "client_encoding",
                                       "keepalives_idle", "keepalives_interval", "keepalives_count",
                                       "dbname"};
  std::vector<const char*> values = {connect_timeout.c_str(),
                                     options_.application_name.c_str(),
                                     "UTF8",
                                     "10",
                                     "5",
                                     "3",
                                     uri_.c_str()};
  if (!options_.password.empty()) {
    keywords.push_back("password");
    values.push_back(options_.password.c_str());
  }
  keywords.push_back(nullptr);
  values.push_back(nullptr);
  PGconn* raw = PQconnectdbParams(keywords.data(), values.data(), /*expand_dbname=*/1);
  if (raw == nullptr) return absl::ResourceExhaustedError("storage: libpq is out of memory");
  if (PQstatus(raw) != CONNECTION_OK) {
    // libpq's reason (refused, no such database, authentication failed) names no password.
    const std::string reason(absl::StripTrailingAsciiWhitespace(PQerrorMessage(raw)));
    PQfinish(raw);
    connection_failures_.fetch_add(1, std::memory_order_relaxed);
    Log(LogLevel::kWarning, "postgres_connect_failed", {{"db", description_}, {"error", reason}});
    return absl::UnavailableError(
        absl::StrCat("storage: cannot connect to ", description_, ": ", reason));
  }
  // Index scans only where an index serves: under SERIALIZABLE a sequential or bitmap heap scan
  // takes a predicate lock on the whole table, and every concurrent writer of it then conflicts
  // (PostgreSQL's docs, "Serializable Isolation Level"); on our keyed lookups it made most
  // concurrent deaths fail to serialize. Index pages are still locked page by page, so units
  // on a small table (a fresh database) conflict often: storage_bench measured 1.8 retries per
  // death at 16 concurrent deaths, hence the retry budget (max_transaction_attempts).
  // No JIT: with those scans disabled a plan without an index path costs over jit_above_cost,
  // and PostgreSQL then compiled such statements with LLVM on every execution (a perf profile
  // of the fault benchmark on PostgreSQL found a sixth of the server's CPU in libLLVM); our
  // statements are short keyed lookups, which JIT never pays for.
  // The server stops a statement at statement_timeout; the client gives up a second later
  // (a frozen server, a commit waiting for its standby: statement_timeout does not cover that
  // wait), and the server then ends the backend within a second of finding the client gone.
  auto connection =
      std::make_unique<Connection>(raw, options_.statement_timeout + absl::Seconds(1));
  RETURN_IF_ERROR(connection->Exec(absl::StrCat(
      "SET statement_timeout = ", absl::ToInt64Milliseconds(options_.statement_timeout),
      "; SET client_connection_check_interval = 1000; SET enable_seqscan = off; SET "
      "enable_bitmapscan = off; SET jit = off")));
  return connection;
}

absl::StatusOr<std::unique_ptr<PostgresDatabase::Connection>> PostgresDatabase::Acquire() {
  {
    base::MutexLock lock(&pool_mutex_);
    const absl::Time deadline = absl::Now() + options_.busy_timeout;
    ++waiting_;
    while (idle_.empty() && open_ >= std::max(1, options_.pool_size)) {
      if (connection_freed_.WaitWithDeadline(&pool_mutex_, deadline) && idle_.empty() &&
          open_ >= std::max(1, options_.pool_size)) {
        --waiting_;
        pool_timeouts_.fetch_add(1, std::memory_order_relaxed);
        return absl::UnavailableError("storage: no database connection came free in time");
      }
    }
    --waiting_;
    if (!idle_.empty()) {
      std::unique_ptr<Connection> connection = std::move(idle_.back());
      idle_.pop_back();
      return connection;
    }
    ++open_;  // Opened below, outside the lock: it may take connect_timeout.
  }
  absl::StatusOr<std::unique_ptr<Connection>> connection = Connect();
  if (!connection.ok()) {
    {
      base::MutexLock lock(&pool_mutex_);
      --open_;
      connection_freed_.Signal();
    }
    // libpq's reason names hosts, ports and users: it is in the log, and callers get the kind.
    return absl::Status(connection.status().code(), "storage: cannot connect to the database");
  }
  return connection;
}

void PostgresDatabase::Release(std::unique_ptr<Connection> connection) {
  const bool broken = connection->broken();
  if (broken) {
    connection_failures_.fetch_add(1, std::memory_order_relaxed);
    connection.reset();  // Closed outside the lock.
  }
  base::MutexLock lock(&pool_mutex_);
  if (broken) {
    --open_;
  } else {
    idle_.push_back(std::move(connection));
  }
  connection_freed_.Signal();
}

absl::Status PostgresDatabase::InTransaction(const std::function<absl::Status(Session&)>& work) {
  return RunTransaction("BEGIN ISOLATION LEVEL SERIALIZABLE", work);
}

absl::Status PostgresDatabase::InClaimingTransaction(
    const std::function<absl::Status(Session&)>& work) {
  // READ COMMITTED raises no serialization failures; a deadlock (40P01) is run again.
  return RunTransaction("BEGIN ISOLATION LEVEL READ COMMITTED", work);
}

absl::Status PostgresDatabase::RunTransaction(absl::string_view begin,
                                              const std::function<absl::Status(Session&)>& work) {
  const int attempts = std::max(1, options_.max_transaction_attempts);
  absl::Status status;
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    ASSIGN_OR_RETURN(std::unique_ptr<Connection> connection, Acquire());
    const AttemptOutcome outcome = RunAttempt(*connection, begin, work, status);
    Release(std::move(connection));
    switch (outcome) {
      case AttemptOutcome::kDone:
        if (status.ok()) commits_.fetch_add(1, std::memory_order_relaxed);
        return status;
      case AttemptOutcome::kConflicted:
        retries_.fetch_add(1, std::memory_order_relaxed);
        PauseBeforeRetry(attempt);
        break;
      case AttemptOutcome::kNotStarted:
        break;  // A pooled connection had died (a restart, a failover): on a new one.
    }
  }
  return absl::Status(status.code(),
                      absl::StrCat(status.message(), "; gave up after ", attempts, " attempts"));
}

absl::Status PostgresDatabase::WithSession(const std::function<absl::Status(Session&)>& work) {
  for (int attempt = 1;; ++attempt) {
    ASSIGN_OR_RETURN(std::unique_ptr<Connection> connection, Acquire());
    absl::Cleanup release = [&] { Release(std::move(connection)); };
    if (absl::Status begun = connection->Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
        !begun.ok()) {
      if (connection->broken() && attempt < 3) continue;  // A dead pooled connection.
      return begun;
    }
    absl::Status status = RunWork(*connection, work);
    if (!connection->broken()) connection->Exec("ROLLBACK").IgnoreError();  // Nothing to keep.
    return status;
  }
}

absl::Status PostgresDatabase::Ping() {
  return WithSession(
      [](Session& session) -> absl::Status { return session.Prepare("SELECT 1").Run(); });
}

absl::Status PostgresDatabase::CheckWritable() {
  // A real write: a transaction that writes nothing but its commit record commits without
  // waiting for the synchronous standby. READ COMMITTED, so that replicas checking at once wait
  // for the row in turn instead of failing to serialize.
  return RunTransaction("BEGIN ISOLATION LEVEL READ COMMITTED", [](Session& session) {
    return session.Prepare("UPDATE schema_version SET version = version").Run();
  });
}

absl::StatusOr<int> PostgresDatabase::SchemaVersion() {
  int version = 0;
  RETURN_IF_ERROR(WithSession([&](Session& session) -> absl::Status {
    Statement& select = session.Prepare("SELECT version FROM schema_version");
    ASSIGN_OR_RETURN(const bool row, select.Step());
    version = row ? static_cast<int>(select.ColumnInt(0)) : 0;
    return absl::OkStatus();
  }));
  return version;
}

StorageStats PostgresDatabase::stats() const {
  StorageStats stats;
  stats.commits = commits_.load(std::memory_order_relaxed);
  stats.units_committed = stats.commits;  // One unit per transaction.
  stats.transaction_retries = retries_.load(std::memory_order_relaxed);
  stats.connection_failures = connection_failures_.load(std::memory_order_relaxed);
  stats.pool_timeouts = pool_timeouts_.load(std::memory_order_relaxed);
  stats.pool_size = std::max(1, options_.pool_size);
  base::MutexLock lock(&pool_mutex_);
  stats.connections_open = open_;
  stats.connections_in_use = open_ - static_cast<int>(idle_.size());
  stats.waiting = waiting_;
  return stats;
}

absl::Status PostgresDatabase::Migrate(const std::vector<std::string>& migrations) {
  // Opened directly, so that a failure to connect says why (for the operator starting it).
  ASSIGN_OR_RETURN(std::unique_ptr<Connection> connection, Connect());
  {
    base::MutexLock lock(&pool_mutex_);
    ++open_;
  }
  absl::Cleanup release = [&] { Release(std::move(connection)); };
  const auto failed = [this](absl::string_view step, const absl::Status& status) {
    return absl::Status(status.code(),
                        absl::StrCat(description_, ": ", step, ": ", status.message()));
  };
  // Session-level: held across the migrations' own transactions, released on every return.
  RETURN_IF_ERROR(
      connection->Exec(absl::StrCat("SELECT pg_advisory_lock(", kMigrationLockKey, ")")));
  absl::Cleanup unlock = [&] {
    if (!connection->broken()) {
      connection->Exec(absl::StrCat("SELECT pg_advisory_unlock(", kMigrationLockKey, ")"))
          .IgnoreError();
    }
  };
  if (absl::Status created = connection->Exec(
          "CREATE TABLE IF NOT EXISTS schema_version ("
          "  only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),"
          "  version INTEGER NOT NULL);"
          "INSERT INTO schema_version (version) VALUES (0) ON CONFLICT DO NOTHING");
      !created.ok()) {
    return failed("schema_version", created);
  }
  int version = 0;
  {
    PostgresStatement& select = connection->Prepare("SELECT version FROM schema_version");
    ASSIGN_OR_RETURN(const bool row, select.Step());
    version = row ? static_cast<int>(select.ColumnInt(0)) : 0;
    select.Reset();
  }
  if (version > static_cast<int>(migrations.size())) {
    return absl::FailedPreconditionError(absl::StrCat(
        description_, ": schema version ", version, " is newer than this binary knows (",
        migrations.size(), "); refusing to run an older binary against it"));
  }
  for (int next = version; next < static_cast<int>(migrations.size()); ++next) {
    const std::string transaction =
        absl::StrCat("BEGIN;", migrations[static_cast<std::size_t>(next)],
                     ";UPDATE schema_version SET version = ", next + 1, ";COMMIT");
    if (absl::Status applied = connection->Exec(transaction); !applied.ok()) {
      if (!connection->broken()) connection->Exec("ROLLBACK").IgnoreError();
      return failed(absl::StrCat("migration ", next + 1), applied);
    }
  }
  return absl::OkStatus();
}

}  // namespace server_kit
