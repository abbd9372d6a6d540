// Opens a service's database on the engine its location names (database.h):
//   postgresql://... or postgres://...   PostgreSQL (postgres.h), with the schema's postgres list
//   sqlite:PATH, sqlite://PATH or PATH   SQLite (sqlite.h), with its sqlite list
#ifndef HOSPITAL_SRC_SERVER_KIT_OPEN_DATABASE_H_
#define HOSPITAL_SRC_SERVER_KIT_OPEN_DATABASE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server_kit/database.h"

namespace server_kit {

absl::StatusOr<std::unique_ptr<Database>> OpenDatabase(const std::string& location,
                                                       const Schema& schema,
                                                       const DatabaseOptions& options = {});

}  // namespace server_kit

#endif  // HOSPITAL_SRC_SERVER_KIT_OPEN_DATABASE_H_
