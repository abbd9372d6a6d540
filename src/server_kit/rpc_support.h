// Small helpers every service handler needs: request validation with messages that name the
// field, page tokens, ids and timestamps. (The handler's answer is made by Serve, serve.h.)
#ifndef HOSPITAL_SRC_SERVER_KIT_RPC_SUPPORT_H_
#define HOSPITAL_SRC_SERVER_KIT_RPC_SUPPORT_H_

#include <cstdint>
#include <string>
#include <string_view>

#include <google/protobuf/timestamp.pb.h>
#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server_kit/page.h"

namespace server_kit {

// An identifier: 1 to 64 characters of letters, digits, '-' and '_'. INVALID_ARGUMENT names
// `field` otherwise.
absl::Status ValidateId(absl::string_view field, absl::string_view value);

// Text of min_length to max_length bytes, valid UTF-8, without control characters other than
// newline and tab (C0, DEL and C1 are refused).
absl::Status ValidateText(absl::string_view field, absl::string_view value, std::size_t min_length,
                          std::size_t max_length);

// Every timestamp the services accept lies in [kEarliestTime, kLatestTime): wide enough for any
// date of birth, death or appointment, and well inside what absl::Time converts without clamping
// (1677 to 2262 in nanoseconds), so what is stored is returned unchanged. Times are stored to
// the microsecond.
inline const absl::Time kEarliestTime =
    absl::FromCivil(absl::CivilDay(1800, 1, 1), absl::UTCTimeZone());
inline const absl::Time kLatestTime =
    absl::FromCivil(absl::CivilDay(2200, 1, 1), absl::UTCTimeZone());

// A timestamp that is set, valid, and in [kEarliestTime, kLatestTime); INVALID_ARGUMENT naming
// `field` otherwise.
absl::StatusOr<absl::Time> ValidateTimestamp(absl::string_view field, bool has_value,
                                             const google::protobuf::Timestamp& value);

// Page size 1 to kMaxPageSize; 0 means kDefaultPageSize.
inline constexpr int kDefaultPageSize = 50;
inline constexpr int kMaxPageSize = 500;
absl::StatusOr<int> ValidatePageSize(absl::string_view field, std::int32_t page_size);

// Page tokens are opaque to clients: base64url of a version tag and the position after the last
// item returned. DecodePageToken returns "" for an empty token (the first page) and
// INVALID_ARGUMENT naming `field` for anything it did not issue.
std::string EncodePageToken(absl::string_view position);
absl::StatusOr<std::string> DecodePageToken(absl::string_view field, absl::string_view token);

// Moves `page` into a list response: its items into `items`, and a page token for the next page
// into `next_page_token` (left empty on the last page).
template <typename Item>
void MovePage(Page<Item>& page, google::protobuf::RepeatedPtrField<Item>* items,
              std::string* next_page_token) {
  for (Item& item : page.items) *items->Add() = std::move(item);
  if (!page.next_position.empty()) *next_page_token = EncodePageToken(page.next_position);
}

// A new random identifier (a version 4 UUID in text form).
std::string NewId();

absl::Time FromProtoTime(const google::protobuf::Timestamp& timestamp);
google::protobuf::Timestamp ToProtoTime(absl::Time time);

// A value for an error message: quoted, cut to at most 64 bytes at a character boundary.
std::string Quote(absl::string_view value);

}  // namespace server_kit

#endif  // HOSPITAL_SRC_SERVER_KIT_RPC_SUPPORT_H_
