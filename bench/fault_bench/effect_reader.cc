#include "fault_bench/effect_reader.h"

#include <libpq-fe.h>
#include <sqlite3.h>

#include <cstdint>

namespace fault_bench {
namespace {

class SqliteEffectReader final : public EffectReader {
 public:
  SqliteEffectReader(const std::string& morgue_db, const std::string& appointments_db) {
    morgue_ = Open(morgue_db);
    appointments_ = Open(appointments_db);
    // Admitted, or admitted and since released by the bench's clerk (ActAsUsers).
    admitted_ =
        Prepare(morgue_, "SELECT 1 FROM admissions WHERE patient_id = ?1 AND status IN (1, 2)");
    morgue_version_ = Prepare(morgue_, "PRAGMA data_version");
    scheduled_ = Prepare(appointments_,
                         "SELECT COUNT(*) FROM appointments WHERE patient_id = ?1 AND status = 1");
    appointments_version_ = Prepare(appointments_, "PRAGMA data_version");
  }
  ~SqliteEffectReader() override {
    for (sqlite3_stmt* statement :
         {admitted_, morgue_version_, scheduled_, appointments_version_}) {
      sqlite3_finalize(statement);
    }
    sqlite3_close(morgue_);
    sqlite3_close(appointments_);
  }
  SqliteEffectReader(const SqliteEffectReader&) = delete;
  SqliteEffectReader& operator=(const SqliteEffectReader&) = delete;

  bool MorgueChanged() override { return Changed(morgue_version_, &last_morgue_version_); }
  bool AppointmentsChanged() override {
    return Changed(appointments_version_, &last_appointments_version_);
  }

  std::set<std::string> Admitted(const std::vector<std::string>& patient_ids) override {
    std::set<std::string> admitted;
    if (admitted_ == nullptr) return admitted;
    for (const std::string& patient_id : patient_ids) {
      sqlite3_bind_text(admitted_, 1, patient_id.data(), static_cast<int>(patient_id.size()),
                        SQLITE_TRANSIENT);
      if (sqlite3_step(admitted_) == SQLITE_ROW) admitted.insert(patient_id);
      sqlite3_reset(admitted_);
    }
    return admitted;
  }
  std::set<std::string> NoneScheduled(const std::vector<std::string>& patient_ids) override {
    std::set<std::string> none_scheduled;
    if (scheduled_ == nullptr) return none_scheduled;
    for (const std::string& patient_id : patient_ids) {
      sqlite3_bind_text(scheduled_, 1, patient_id.data(), static_cast<int>(patient_id.size()),
                        SQLITE_TRANSIENT);
      if (sqlite3_step(scheduled_) == SQLITE_ROW && sqlite3_column_int(scheduled_, 0) == 0) {
        none_scheduled.insert(patient_id);
      }
      sqlite3_reset(scheduled_);
    }
    return none_scheduled;
  }
  absl::Duration poll_interval() const override { return absl::Milliseconds(1); }

 private:
  static sqlite3* Open(const std::string& path) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      sqlite3_close(db);
      return nullptr;
    }
    sqlite3_busy_timeout(db, 1000);
    return db;
  }
  static sqlite3_stmt* Prepare(sqlite3* db, const char* sql) {
    sqlite3_stmt* statement = nullptr;
    if (db != nullptr) sqlite3_prepare_v2(db, sql, -1, &statement, nullptr);
    return statement;
  }
  static bool Changed(sqlite3_stmt* version, std::int64_t* last) {
    if (version == nullptr) return true;
    const std::int64_t now =
        sqlite3_step(version) == SQLITE_ROW ? sqlite3_column_int64(version, 0) : -1;
    sqlite3_reset(version);
    const bool changed = now < 0 || now != *last;
    *last = now;
    return changed;
  }

  sqlite3* morgue_ = nullptr;
  sqlite3* appointments_ = nullptr;
  sqlite3_stmt* admitted_ = nullptr;
  sqlite3_stmt* morgue_version_ = nullptr;
  sqlite3_stmt* scheduled_ = nullptr;
  sqlite3_stmt* appointments_version_ = nullptr;
  std::int64_t last_morgue_version_ = -1;
  std::int64_t last_appointments_version_ = -1;
};

// One query per call for all the patients asked about: `patient_ids` as a text array.
class PostgresEffectReader final : public EffectReader {
 public:
  PostgresEffectReader(std::string morgue, std::string appointments)
      : morgue_(PQconnectdb(morgue.c_str())), appointments_(PQconnectdb(appointments.c_str())) {}
  ~PostgresEffectReader() override {
    PQfinish(morgue_);
    PQfinish(appointments_);
  }
  PostgresEffectReader(const PostgresEffectReader&) = delete;
  PostgresEffectReader& operator=(const PostgresEffectReader&) = delete;

  bool MorgueChanged() override { return true; }
  bool AppointmentsChanged() override { return true; }

  std::set<std::string> Admitted(const std::vector<std::string>& patient_ids) override {
    // The explicit collation settles the comparison between the column's "C" and the array's
    // default.
    return Select(morgue_,
                  "SELECT patient_id FROM admissions WHERE patient_id COLLATE \"C\" = "
                  "ANY($1::text[]) AND status IN (1, 2)",
                  patient_ids);
  }
  std::set<std::string> NoneScheduled(const std::vector<std::string>& patient_ids) override {
    return Select(appointments_,
                  "SELECT p FROM unnest($1::text[]) AS p WHERE NOT EXISTS (SELECT 1 FROM "
                  "appointments a WHERE a.patient_id COLLATE \"C\" = p AND a.status = 1)",
                  patient_ids);
  }
  absl::Duration poll_interval() const override { return absl::Milliseconds(10); }

 private:
  // PostgreSQL's text form of a text array: {"a","b"}, with " and \ escaped.
  static std::string ArrayLiteral(const std::vector<std::string>& values) {
    std::string literal = "{";
    for (const std::string& value : values) {
      if (literal.size() > 1) literal += ',';
      literal += '"';
      for (char c : value) {
        if (c == '"' || c == '\\') literal += '\\';
        literal += c;
      }
      literal += '"';
    }
    return literal + "}";
  }

  // The first column of every row; none when the server cannot be reached (the connection is
  // made again on the next call: after a failover it finds the new primary).
  static std::set<std::string> Select(PGconn* connection, const char* sql,
                                      const std::vector<std::string>& patient_ids) {
    std::set<std::string> rows;
    if (patient_ids.empty()) return rows;
    if (PQstatus(connection) != CONNECTION_OK) {
      PQreset(connection);
      if (PQstatus(connection) != CONNECTION_OK) return rows;
    }
    const std::string array = ArrayLiteral(patient_ids);
    const char* values[] = {array.c_str()};
    PGresult* result = PQexecParams(connection, sql, 1, nullptr, values, nullptr, nullptr, 0);
    if (PQresultStatus(result) == PGRES_TUPLES_OK) {
      for (int row = 0; row < PQntuples(result); ++row) rows.insert(PQgetvalue(result, row, 0));
    }
    PQclear(result);
    return rows;
  }

  PGconn* morgue_;
  PGconn* appointments_;
};

}  // namespace

std::unique_ptr<EffectReader> ReadEffectsOf(const System& system) {
  if (!system.PostgresConnection(Service::kMorgue).empty()) {
    return std::make_unique<PostgresEffectReader>(
        system.PostgresConnection(Service::kMorgue),
        system.PostgresConnection(Service::kAppointments));
  }
  return std::make_unique<SqliteEffectReader>(system.SqlitePath(Service::kMorgue),
                                              system.SqlitePath(Service::kAppointments));
}

}  // namespace fault_bench
