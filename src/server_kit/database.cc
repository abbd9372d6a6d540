#include "server_kit/database.h"

#include <exception>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace server_kit {

const char* EngineName(Engine engine) {
  return engine == Engine::kPostgres ? "postgresql" : "sqlite";
}

void Statement::BindTime(int index, absl::Time value) { BindInt(index, absl::ToUnixMicros(value)); }

absl::Time Statement::ColumnTime(int index) const { return absl::FromUnixMicros(ColumnInt(index)); }

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

absl::Status RunUnitOfWork(Database::Session& session,
                           const std::function<absl::Status(Database::Session&)>& work) {
  try {
    return work(session);
  } catch (const std::exception& exception) {
    return absl::InternalError(absl::StrCat("unit of work threw: ", exception.what()));
  } catch (...) {
    return absl::InternalError("unit of work threw");
  }
}

bool IsPostgresLocation(absl::string_view location) {
  return absl::StartsWith(location, "postgresql://") || absl::StartsWith(location, "postgres://");
}

}  // namespace server_kit
