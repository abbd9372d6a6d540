#include "resilience/status_codes.h"

#include <array>

namespace resilience {
namespace {

constexpr std::array<std::string_view, 17> kNames = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

}  // namespace

std::string_view StatusCodeName(grpc::StatusCode code) {
  const int value = static_cast<int>(code);
  if (value < 0 || value >= static_cast<int>(kNames.size())) return "UNKNOWN_CODE";
  return kNames[static_cast<std::size_t>(value)];
}

std::optional<grpc::StatusCode> StatusCodeFromName(std::string_view name) {
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == name) return static_cast<grpc::StatusCode>(i);
  }
  return std::nullopt;
}

}  // namespace resilience
