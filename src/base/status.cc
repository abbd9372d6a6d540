#include "base/status.h"

namespace base {

std::optional<absl::StatusCode> StatusCodeFromName(std::string_view name) {
  // absl::StatusCode's canonical values are 0..16, and absl::StatusCodeToString names them as
  // gRPC does.
  for (int value = 0; value <= static_cast<int>(absl::StatusCode::kUnauthenticated); ++value) {
    const auto code = static_cast<absl::StatusCode>(value);
    if (absl::StatusCodeToString(code) == name) return code;
  }
  return std::nullopt;
}

}  // namespace base
