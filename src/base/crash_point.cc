#include "base/crash_point.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"

namespace base {
namespace {

struct Armed {
  std::string spec;  // The variable as read.
  std::string name;
  std::int64_t pass = 1;
  std::atomic<std::int64_t> passes{0};
};

// Null when nothing is armed. A malformed count arms nothing rather than some other pass.
Armed* ArmedOrNull() {
  static Armed* const armed = []() -> Armed* {
    const char* spec = std::getenv("HOSPITAL_CRASH_AT");
    if (spec == nullptr || *spec == '\0') return nullptr;
    auto* point = new Armed;  // Lives as long as the process.
    point->spec = spec;
    const std::string_view text(spec);
    const std::size_t at = text.find('@');
    point->name = std::string(text.substr(0, at));
    if (at != std::string_view::npos &&
        (!absl::SimpleAtoi(std::string(text.substr(at + 1)), &point->pass) || point->pass < 1)) {
      point->name.clear();
    }
    return point;
  }();
  return armed;
}

}  // namespace

void CrashPoint(std::string_view name) {
  Armed* armed = ArmedOrNull();
  if (armed == nullptr || armed->name.empty() || armed->name != name) return;
  if (armed->passes.fetch_add(1, std::memory_order_relaxed) + 1 != armed->pass) return;
  const std::string line = "crash point " + armed->name + " reached\n";
  // write(2) and kill(2) only: nothing that could take a lock another thread holds.
  (void)!::write(STDERR_FILENO, line.data(), line.size());
  ::kill(::getpid(), SIGKILL);
}

const std::string& ArmedCrashPoint() {
  static const std::string kNone;
  const Armed* armed = ArmedOrNull();
  return armed != nullptr ? armed->spec : kNone;
}

}  // namespace base
