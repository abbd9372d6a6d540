// Structured logs: one JSON object per line on stderr, so that log collectors can parse them.
//
//   server_kit::InitLog("patients");
//   server_kit::Log(server_kit::LogLevel::kInfo, "started", {{"listen", "0.0.0.0:50051"}});
//   -> {"time":"2026-11-26T14:00:00.123456Z","level":"info","service":"patients",
//       "event":"started","listen":"0.0.0.0:50051"}
//
// Thread-safe: each line is written with one call, under a lock.
#ifndef HOSPITAL_SRC_SERVER_KIT_LOG_H_
#define HOSPITAL_SRC_SERVER_KIT_LOG_H_

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/string_view.h"

namespace server_kit {

enum class LogLevel { kInfo, kWarning, kError };

// Names the service in every line. Call once at start-up.
void InitLog(std::string service);

// Writes one line with `event` and the given fields (values are JSON-escaped strings).
void Log(LogLevel level, absl::string_view event,
         std::initializer_list<std::pair<absl::string_view, std::string>> fields = {});

// The JSON string literal for `value`, with quotes.
std::string JsonQuote(absl::string_view value);

}  // namespace server_kit

#endif  // HOSPITAL_SRC_SERVER_KIT_LOG_H_
