#include "server_kit/rpc_support.h"

#include <google/protobuf/util/time_util.h>

#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/sync.h"

namespace server_kit {
namespace {

constexpr absl::string_view kPageTokenTag = "pt1:";

// Whether `text` is made of well-formed UTF-8 sequences (lead byte, then the continuation bytes
// it announces).
bool IsValidUtf8(absl::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto byte = static_cast<unsigned char>(text[i]);
    int continuation = 0;
    if (byte < 0x80) {
      continuation = 0;
    } else if ((byte & 0xE0) == 0xC0 && byte >= 0xC2) {
      continuation = 1;
    } else if ((byte & 0xF0) == 0xE0) {
      continuation = 2;
    } else if ((byte & 0xF8) == 0xF0 && byte <= 0xF4) {
      continuation = 3;
    } else {
      return false;
    }
    if (i + static_cast<std::size_t>(continuation) >= text.size()) return false;
    for (int k = 1; k <= continuation; ++k) {
      if ((static_cast<unsigned char>(text[i + static_cast<std::size_t>(k)]) & 0xC0) != 0x80) {
        return false;
      }
    }
    i += static_cast<std::size_t>(continuation) + 1;
  }
  return true;
}

}  // namespace

std::string Quote(absl::string_view value) {
  if (value.size() <= 64) return absl::StrCat("\"", value, "\"");
  // Cut before a character, not inside one: back off over UTF-8 continuation bytes.
  std::size_t cut = 61;
  while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat("\"", value.substr(0, cut), "...\"");
}

absl::Status ValidateId(absl::string_view field, absl::string_view value) {
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": is required"));
  bool valid = value.size() <= 64;
  for (char c : value) {
    valid = valid && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_');
  }
  if (!valid) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be 1 to 64 letters, digits, '-' or '_', got ", Quote(value),
                     value.size() > 64 ? absl::StrCat(" (", value.size(), " characters)") : ""));
  }
  return absl::OkStatus();
}

absl::Status ValidateText(absl::string_view field, absl::string_view value, std::size_t min_length,
                          std::size_t max_length) {
  if (value.size() < min_length) {
    return absl::InvalidArgumentError(
        min_length == 1 ? absl::StrCat(field, ": is required")
                        : absl::StrCat(field, ": must be at least ", min_length, " bytes"));
  }
  if (value.size() > max_length) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be at most ", max_length, " bytes, got ", value.size()));
  }
  if (!IsValidUtf8(value)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": is not valid UTF-8"));
  }
  for (std::size_t i = 0; i < value.size(); ++i) {
    const auto byte = static_cast<unsigned char>(value[i]);
    // C0 (but newline and tab), DEL, and C1 (U+0080 to U+009F, encoded C2 80 to C2 9F).
    const bool c0 = byte < 0x20 && byte != '\n' && byte != '\t';
    const bool c1 =
        byte == 0xC2 && i + 1 < value.size() && static_cast<unsigned char>(value[i + 1]) <= 0x9F;
    if (c0 || byte == 0x7F || c1) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": contains a control character at byte ", i));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::Time> ValidateTimestamp(absl::string_view field, bool has_value,
                                             const google::protobuf::Timestamp& value) {
  if (!has_value) return absl::InvalidArgumentError(absl::StrCat(field, ": is required"));
  if (value.seconds() < google::protobuf::util::TimeUtil::kTimestampMinSeconds ||
      value.seconds() > google::protobuf::util::TimeUtil::kTimestampMaxSeconds ||
      value.nanos() < 0 || value.nanos() > 999'999'999) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": is not a valid timestamp"));
  }
  const absl::Time time = FromProtoTime(value);
  if (time < kEarliestTime || time >= kLatestTime) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": must be from ",
        absl::FormatTime(absl::RFC3339_sec, kEarliestTime, absl::UTCTimeZone()), " to before ",
        absl::FormatTime(absl::RFC3339_sec, kLatestTime, absl::UTCTimeZone()), ", got ",
        google::protobuf::util::TimeUtil::ToString(value)));
  }
  return time;
}

absl::StatusOr<int> ValidatePageSize(absl::string_view field, std::int32_t page_size) {
  if (page_size == 0) return kDefaultPageSize;
  if (page_size < 0 || page_size > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be 0 to ", kMaxPageSize, ", got ", page_size));
  }
  return page_size;
}

std::string EncodePageToken(absl::string_view position) {
  return absl::WebSafeBase64Escape(absl::StrCat(kPageTokenTag, position));
}

absl::StatusOr<std::string> DecodePageToken(absl::string_view field, absl::string_view token) {
  if (token.empty()) return std::string();
  std::string decoded;
  if (token.size() > 1024 || !absl::WebSafeBase64Unescape(token, &decoded) ||
      !absl::StartsWith(decoded, kPageTokenTag) || decoded.size() == kPageTokenTag.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": malformed page token ", Quote(token),
                     "; pass next_page_token from the previous response unchanged"));
  }
  return decoded.substr(kPageTokenTag.size());
}

std::string NewId() {
  static base::Mutex mutex;
  static std::mt19937_64 generator{std::random_device{}()};
  std::uint64_t high = 0;
  std::uint64_t low = 0;
  {
    base::MutexLock lock(&mutex);
    high = generator();
    low = generator();
  }
  high = (high & 0xFFFFFFFFFFFF0FFFULL) | 0x0000000000004000ULL;  // Version 4.
  low = (low & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;    // Variant 1.
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", high >> 32, (high >> 16) & 0xFFFF,
                         high & 0xFFFF, low >> 48, low & 0xFFFFFFFFFFFFULL);
}

absl::Time FromProtoTime(const google::protobuf::Timestamp& timestamp) {
  return absl::FromUnixSeconds(timestamp.seconds()) + absl::Nanoseconds(timestamp.nanos());
}

google::protobuf::Timestamp ToProtoTime(absl::Time time) {
  // Seconds and the remainder apart: absl::ToUnixNanos would clamp outside 1677-2262.
  const std::int64_t seconds = absl::ToUnixSeconds(time);
  google::protobuf::Timestamp timestamp;
  timestamp.set_seconds(seconds);
  timestamp.set_nanos(
      static_cast<std::int32_t>(absl::ToInt64Nanoseconds(time - absl::FromUnixSeconds(seconds))));
  return timestamp;
}

}  // namespace server_kit
