// Status codes by name, a set of codes that needs no allocation to query, and the two macros that
// let a function returning absl::Status or absl::StatusOr stop at the first error.
//
//   absl::StatusOr<Patient> Load(std::string_view id) {
//     RETURN_IF_ERROR(ValidateId("patient_id", id));
//     ASSIGN_OR_RETURN(Row row, repository.Find(id));
//     return ToPatient(row);
//   }
//
// The codes are absl::StatusCode; gRPC's grpc::StatusCode has the same values, and code that
// speaks gRPC converts once, at its edge.
#ifndef HOSPITAL_SRC_BASE_STATUS_H_
#define HOSPITAL_SRC_BASE_STATUS_H_

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace base {

// The code named `name` in upper case, as gRPC's service config and absl::StatusCodeToString
// spell it ("UNAVAILABLE"), or nullopt.
std::optional<absl::StatusCode> StatusCodeFromName(std::string_view name);

// A set of status codes as a bit mask. Cheap to copy and to query.
class StatusCodeSet final {
 public:
  constexpr StatusCodeSet() = default;
  constexpr StatusCodeSet(std::initializer_list<absl::StatusCode> codes) {
    for (absl::StatusCode code : codes) Add(code);
  }
  constexpr void Add(absl::StatusCode code) {
    const int value = static_cast<int>(code);
    if (value >= 0 && value < 32) bits_ |= (std::uint32_t{1} << value);
  }
  constexpr bool Contains(absl::StatusCode code) const {
    const int value = static_cast<int>(code);
    return value >= 0 && value < 32 && (bits_ & (std::uint32_t{1} << value)) != 0;
  }
  constexpr bool empty() const { return bits_ == 0; }
  constexpr bool operator==(const StatusCodeSet& other) const { return bits_ == other.bits_; }

 private:
  std::uint32_t bits_ = 0;
};

namespace status_internal {
inline const absl::Status& AsStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& AsStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}
}  // namespace status_internal

}  // namespace base

#define BASE_STATUS_CONCAT_INNER_(a, b) a##b
#define BASE_STATUS_CONCAT_(a, b) BASE_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status or absl::StatusOr) once and returns its status from the
// enclosing function if it is not OK.
#define RETURN_IF_ERROR(expr)                                           \
  do {                                                                  \
    if (auto&& base_status_value_ = (expr); !base_status_value_.ok()) { \
      return ::base::status_internal::AsStatus(base_status_value_);     \
    }                                                                   \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>) once; returns its status from the enclosing function
// if it is not OK, else moves its value into `lhs` (a declaration such as `Row row` or an
// existing variable).
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  BASE_ASSIGN_OR_RETURN_IMPL_(BASE_STATUS_CONCAT_(base_status_or_, __LINE__), lhs, rexpr)
#define BASE_ASSIGN_OR_RETURN_IMPL_(status_or, lhs, rexpr)   \
  auto status_or = (rexpr);                                  \
  if (!status_or.ok()) return std::move(status_or).status(); \
  lhs = *std::move(status_or)

#endif  // HOSPITAL_SRC_BASE_STATUS_H_
