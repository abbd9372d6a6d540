// gRPC status codes by name, and a small set of codes that needs no allocation to query.
#ifndef HOSPITAL_SRC_RESILIENCE_STATUS_CODES_H_
#define HOSPITAL_SRC_RESILIENCE_STATUS_CODES_H_

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string_view>

#include <grpcpp/support/status.h>

namespace resilience {

// The canonical name of `code` ("UNAVAILABLE"), or "UNKNOWN_CODE" for a value outside 0..16.
std::string_view StatusCodeName(grpc::StatusCode code);

// The code named `name` (upper case, as in gRPC's service config), or nullopt.
std::optional<grpc::StatusCode> StatusCodeFromName(std::string_view name);

// A set of status codes as a bit mask. Cheap to copy and to query.
class StatusCodeSet final {
 public:
  constexpr StatusCodeSet() = default;
  constexpr StatusCodeSet(std::initializer_list<grpc::StatusCode> codes) {
    for (grpc::StatusCode code : codes) Add(code);
  }
  constexpr void Add(grpc::StatusCode code) {
    const int value = static_cast<int>(code);
    if (value >= 0 && value < 32) bits_ |= (std::uint32_t{1} << value);
  }
  constexpr bool Contains(grpc::StatusCode code) const {
    const int value = static_cast<int>(code);
    return value >= 0 && value < 32 && (bits_ & (std::uint32_t{1} << value)) != 0;
  }
  constexpr bool empty() const { return bits_ == 0; }
  constexpr bool operator==(const StatusCodeSet& other) const { return bits_ == other.bits_; }

 private:
  std::uint32_t bits_ = 0;
};

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_STATUS_CODES_H_
