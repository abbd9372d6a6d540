// gRPC method names: "/package.Service/Method" as gRPC sends it, or "package.Service/Method" as
// policies and fault rules write it.
#ifndef HOSPITAL_SRC_BASE_METHOD_NAME_H_
#define HOSPITAL_SRC_BASE_METHOD_NAME_H_

#include <optional>
#include <string_view>

namespace base {

struct MethodName {
  std::string_view service;  // "package.Service"
  std::string_view method;   // "Method"
};

// Splits `full_name` (with or without the leading '/') at its one '/'. nullopt when the service
// or the method is empty, or there is no '/' or more than one. The views point into `full_name`.
constexpr std::optional<MethodName> ParseMethodName(std::string_view full_name) {
  if (!full_name.empty() && full_name.front() == '/') full_name.remove_prefix(1);
  const std::size_t slash = full_name.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == full_name.size() ||
      full_name.find('/', slash + 1) != std::string_view::npos) {
    return std::nullopt;
  }
  return MethodName{full_name.substr(0, slash), full_name.substr(slash + 1)};
}

}  // namespace base

#endif  // HOSPITAL_SRC_BASE_METHOD_NAME_H_
