// A test that fails leaves nothing behind: every process the test support starts ends with the
// test process, however it ends: killed as ctest's timeout kills it, aborted by an uncaught
// exception, or unwinding from a failed REQUIRE. (Service processes of failed direct_write_test
// cases were once found running an hour later, their parent gone.)
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>

#include <catch2/catch.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "testing_support/service_process.h"

namespace {

using testing_support::ServiceProcess;
using testing_support::TempDir;

// Whether `pid` is still a live process (a zombie nobody reaped yet counts as gone).
bool Alive(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return false;
  const std::size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

bool GoneWithin(pid_t pid, absl::Duration timeout) {
  const absl::Time give_up = absl::Now() + timeout;
  while (Alive(pid)) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

std::unique_ptr<ServiceProcess> Morgue(const TempDir& dir) {
  return std::make_unique<ServiceProcess>(testing_support::BinaryPath("morgue"),
                                          std::vector<std::string>{"--db=" + dir.path() + "/m.db"},
                                          dir.path() + "/morgue.log", dir.path() + "/morgue.ports");
}

enum class Ending { kKilled, kUncaughtException };

// Forks a test process that starts the morgue from a thread that ends at once (a child must not
// die with the thread that started it), checks that the morgue outlives that thread, reports the
// morgue's pid, and then ends as `ending` says. Returns the morgue's pid, or -1.
pid_t MorgueOfATestThatEnds(const TempDir& dir, Ending ending) {
  int report[2];
  REQUIRE(pipe(report) == 0);
  const pid_t test = fork();
  REQUIRE(test >= 0);
  if (test == 0) {
    close(report[0]);
    std::unique_ptr<ServiceProcess> morgue = Morgue(dir);
    std::thread starter([&] {
      if (!morgue->Start().ok()) _exit(3);
    });
    starter.join();
    absl::SleepFor(absl::Milliseconds(300));
    const std::string pid = Alive(morgue->pid()) ? absl::StrCat(morgue->pid()) : "died";
    (void)!write(report[1], pid.data(), pid.size());
    close(report[1]);
    if (ending == Ending::kKilled) raise(SIGKILL);
    // Thrown on a thread of its own, where Catch2 does not catch it: std::terminate, abort.
    std::thread([] {
      throw std::runtime_error("a test that throws where nothing catches");
    }).join();
    _exit(4);
  }
  close(report[1]);
  char buffer[32] = {};
  const ssize_t length = read(report[0], buffer, sizeof buffer - 1);
  close(report[0]);
  int status = 0;
  waitpid(test, &status, 0);
  CHECK(WIFSIGNALED(status));
  pid_t morgue = -1;
  const std::string text(buffer, length > 0 ? static_cast<std::size_t>(length) : 0);
  INFO("the test process reported \"" << text << "\"");
  REQUIRE(absl::SimpleAtoi(text, &morgue));
  return morgue;
}

TEST_CASE("the services a killed test started end with it", "[cleanup]") {
  TempDir dir;
  const pid_t morgue = MorgueOfATestThatEnds(dir, Ending::kKilled);
  CHECK(GoneWithin(morgue, absl::Seconds(5)));
}

TEST_CASE("the services a test aborted by an uncaught exception started end with it", "[cleanup]") {
  TempDir dir;
  const pid_t morgue = MorgueOfATestThatEnds(dir, Ending::kUncaughtException);
  CHECK(GoneWithin(morgue, absl::Seconds(5)));
}

TEST_CASE("a failed REQUIRE unwinds through the services it started, ending them", "[cleanup]") {
  TempDir dir;
  pid_t morgue = -1;
  try {
    std::unique_ptr<ServiceProcess> process = Morgue(dir);
    REQUIRE(process->Start().ok());
    morgue = process->pid();
    throw std::runtime_error("what a failed REQUIRE throws, as far as unwinding goes");
  } catch (const std::runtime_error&) {
  }
  REQUIRE(morgue > 0);
  CHECK_FALSE(Alive(morgue));
}

}  // namespace
