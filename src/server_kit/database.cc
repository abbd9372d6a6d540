#include "server_kit/database.h"

#include "absl/strings/match.h"

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

bool IsPostgresLocation(absl::string_view location) {
  return absl::StartsWith(location, "postgresql://") || absl::StartsWith(location, "postgres://");
}

}  // namespace server_kit
