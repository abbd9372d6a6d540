#include "server_kit/open_database.h"

#include "server_kit/postgres.h"
#include "server_kit/sqlite.h"

namespace server_kit {

absl::StatusOr<std::unique_ptr<Database>> OpenDatabase(const std::string& location,
                                                       const Schema& schema,
                                                       const DatabaseOptions& options) {
  if (IsPostgresLocation(location)) {
    absl::StatusOr<std::unique_ptr<PostgresDatabase>> database =
        PostgresDatabase::Open(location, schema.postgres, options);
    if (!database.ok()) return database.status();
    return std::unique_ptr<Database>(*std::move(database));
  }
  absl::StatusOr<std::unique_ptr<SqliteDatabase>> database =
      SqliteDatabase::Open(SqlitePath(location), schema.sqlite, options);
  if (!database.ok()) return database.status();
  return std::unique_ptr<Database>(*std::move(database));
}

}  // namespace server_kit
