#include "testing_support/service_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/functional/any_invocable.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/sync.h"

extern char** environ;

namespace testing_support {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = absl::StrCat(base != nullptr ? base : "/tmp", "/hospital-test-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) std::abort();
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

namespace {

// `program` itself when it names a path, else the first executable of that name on PATH.
std::string ResolveProgram(const std::string& program) {
  if (program.find('/') != std::string::npos) return program;
  const char* path = std::getenv("PATH");
  for (absl::string_view directory :
       absl::StrSplit(path != nullptr ? path : "/usr/bin:/bin", ':')) {
    const std::string candidate = absl::StrCat(directory.empty() ? "." : directory, "/", program);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return program;
}

// Forks and executes the prepared `argv` with `environment`, output appended to `log_path`. The
// child gets SIGKILL when the thread that forked it ends (PR_SET_PDEATHSIG), so it must be this
// process's spawning thread (below). Between fork and exec the child only makes system calls.
absl::StatusOr<pid_t> ForkAndExec(const std::string& program, const std::vector<char*>& argv,
                                  const std::vector<char*>& environment,
                                  const std::string& log_path, std::optional<RunAs> run_as) {
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("cannot fork for ", program));
  if (pid == 0) {
    // First: a change of credentials clears the parent-death signal set below.
    if (run_as.has_value() && (::setgroups(0, nullptr) != 0 || ::setgid(run_as->gid) != 0 ||
                               ::setuid(run_as->uid) != 0)) {
      ::_exit(126);
    }
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    // The parent may have died before the line above took effect.
    if (::getppid() != parent) ::_exit(127);
    // The child must not inherit a blocked SIGTERM from the test process.
    sigset_t empty;
    sigemptyset(&empty);
    ::sigprocmask(SIG_SETMASK, &empty, nullptr);
    const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log < 0) ::_exit(127);
    ::dup2(log, STDOUT_FILENO);
    ::dup2(log, STDERR_FILENO);
    ::execve(program.c_str(), argv.data(), environment.data());
    ::_exit(127);
  }
  return pid;
}

// The one thread that starts every child process, for as long as the process lives: a child's
// parent-death signal follows the thread that forked it, and tests and the benchmark start
// processes from threads that end before them (a fault timeline restarting a service).
class SpawningThread final {
 public:
  static SpawningThread& Get() {
    static SpawningThread* const thread = new SpawningThread;  // Never destroyed: see above.
    return *thread;
  }

  absl::StatusOr<pid_t> Run(absl::AnyInvocable<absl::StatusOr<pid_t>()> spawn) {
    base::Notification done;
    absl::StatusOr<pid_t> result = absl::InternalError("not spawned");
    {
      base::MutexLock lock(&mutex_);
      requests_.push_back([&] {
        result = spawn();
        done.Notify();
      });
      wake_.Signal();
    }
    done.WaitForNotification();
    return result;
  }

 private:
  SpawningThread() {
    std::thread([this] { Loop(); }).detach();
  }

  void Loop() {
    while (true) {
      absl::AnyInvocable<void()> request;
      {
        base::MutexLock lock(&mutex_);
        while (requests_.empty()) wake_.Wait(&mutex_);
        request = std::move(requests_.front());
        requests_.pop_front();
      }
      request();
    }
  }

  base::Mutex mutex_;
  base::CondVar wake_;
  std::deque<absl::AnyInvocable<void()>> requests_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace

absl::StatusOr<pid_t> Spawn(std::vector<std::string> argv_strings, const std::string& log_path,
                            const std::vector<std::string>& extra_environment,
                            std::optional<RunAs> run_as) {
  const std::string program = ResolveProgram(argv_strings.front());
  std::vector<char*> argv;
  for (std::string& argument : argv_strings) argv.push_back(argument.data());
  argv.push_back(nullptr);
  // The test's environment, less what `extra_environment` sets again.
  std::vector<std::string> variables(extra_environment.begin(), extra_environment.end());
  for (char** variable = environ; *variable != nullptr; ++variable) {
    const absl::string_view entry(*variable);
    const absl::string_view name = entry.substr(0, entry.find('='));
    const bool overridden = std::any_of(
        extra_environment.begin(), extra_environment.end(),
        [&](const std::string& extra) { return absl::StartsWith(extra, absl::StrCat(name, "=")); });
    if (!overridden) variables.emplace_back(entry);
  }
  std::vector<char*> environment;
  for (std::string& variable : variables) environment.push_back(variable.data());
  environment.push_back(nullptr);
  return SpawningThread::Get().Run(
      [&] { return ForkAndExec(program, argv, environment, log_path, run_as); });
}

std::string BinaryPath(const std::string& name) {
  return absl::StrCat(HOSPITAL_BINARY_DIR, "/bin/", name);
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  close(fd);
  return port;
}

std::string SourcePath(const std::string& relative) {
  return absl::StrCat(HOSPITAL_SOURCE_DIR, "/", relative);
}

absl::Status RunToCompletion(std::vector<std::string> argv, const std::string& log_path) {
  const std::string program = argv.front();
  absl::StatusOr<pid_t> pid = Spawn(std::move(argv), log_path);
  if (!pid.ok()) return pid.status();
  int status = 0;
  while (waitpid(*pid, &status, 0) < 0) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat(program, " failed; see ", log_path));
  }
  return absl::OkStatus();
}

ServiceProcess::ServiceProcess(std::string binary, std::vector<std::string> arguments,
                               std::string log_path, std::string port_file, bool with_metrics,
                               bool with_admin)
    : binary_(std::move(binary)),
      arguments_(std::move(arguments)),
      log_path_(std::move(log_path)),
      port_file_(std::move(port_file)),
      with_metrics_(with_metrics),
      with_admin_(with_admin) {}

ServiceProcess::~ServiceProcess() {
  if (pid_ > 0) Kill();
}

std::string ServiceProcess::address() const { return absl::StrCat("127.0.0.1:", grpc_port_); }

std::string ServiceProcess::admin_address() const {
  return absl::StrCat("127.0.0.1:", admin_port_);
}

std::string ServiceProcess::log() const {
  std::ifstream file(log_path_);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

absl::Status ServiceProcess::Start(absl::Duration timeout) {
  std::remove(port_file_.c_str());
  // Before the caller's arguments, which may override it.
  std::vector<std::string> argv_strings = {binary_};
  if (with_admin_) argv_strings.push_back(absl::StrCat("--admin_listen=127.0.0.1:", admin_port_));
  argv_strings.insert(argv_strings.end(), arguments_.begin(), arguments_.end());
  argv_strings.push_back(absl::StrCat("--listen=127.0.0.1:", grpc_port_));
  argv_strings.push_back(with_metrics_ ? absl::StrCat("--metrics_listen=127.0.0.1:", metrics_port_)
                                       : std::string("--metrics_listen=none"));
  argv_strings.push_back(absl::StrCat("--port_file=", port_file_));
  absl::StatusOr<pid_t> spawned = Spawn(argv_strings, log_path_, environment_);
  if (!spawned.ok()) return spawned.status();
  pid_ = *spawned;

  const absl::Time give_up = absl::Now() + timeout;
  while (absl::Now() < give_up) {
    std::ifstream file(port_file_);
    std::string line;
    int grpc = 0;
    int metrics = 0;
    int admin = 0;
    int health = 0;
    while (std::getline(file, line)) {
      std::pair<std::string, std::string> parts = absl::StrSplit(line, '=');
      if (parts.first == "grpc") (void)absl::SimpleAtoi(parts.second, &grpc);
      if (parts.first == "metrics") (void)absl::SimpleAtoi(parts.second, &metrics);
      if (parts.first == "admin") (void)absl::SimpleAtoi(parts.second, &admin);
      if (parts.first == "health") (void)absl::SimpleAtoi(parts.second, &health);
    }
    if (grpc > 0) {
      grpc_port_ = grpc;
      metrics_port_ = metrics;
      admin_port_ = admin;
      health_port_ = health;
      return absl::OkStatus();
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(absl::StrCat(binary_, " exited during start-up:\n", log()));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::DeadlineExceededError(absl::StrCat(binary_, " did not start:\n", log()));
}

int ServiceProcess::Wait(absl::Duration timeout) {
  if (pid_ <= 0) return -1;
  const absl::Time give_up = absl::Now() + timeout;
  while (true) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (absl::Now() > give_up) {
      Kill();
      return -1;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

int ServiceProcess::Terminate(absl::Duration timeout) {
  if (pid_ <= 0) return -1;
  SendTerminate();
  return Wait(timeout);
}

void ServiceProcess::SendTerminate() {
  if (pid_ <= 0) return;
  kill(pid_, SIGCONT);
  kill(pid_, SIGTERM);
}

void ServiceProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

void ServiceProcess::Freeze() {
  if (pid_ > 0) kill(pid_, SIGSTOP);
}

void ServiceProcess::Unfreeze() {
  if (pid_ > 0) kill(pid_, SIGCONT);
}

absl::StatusOr<std::string> ScrapeMetrics(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot connect to metrics port ", port));
  }
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("cannot send the metrics request");
  }
  std::string response;
  char buffer[4096];
  for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;) {
    response.append(buffer, static_cast<std::size_t>(n));
  }
  close(fd);
  const std::size_t body = response.find("\r\n\r\n");
  if (body == std::string::npos) return absl::UnavailableError("malformed metrics response");
  return response.substr(body + 4);
}

double SumSamples(const std::string& scrape, const std::string& name,
                  const std::vector<std::string>& labels) {
  double sum = 0;
  std::istringstream lines(scrape);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    const std::size_t end = line.find_first_of("{ ");
    if (line.compare(0, end, name) != 0 || end != name.size()) continue;
    bool matches = true;
    for (const std::string& label : labels)
      matches = matches && line.find(label) != std::string::npos;
    if (!matches) continue;
    double value = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) sum += value;
  }
  return sum;
}

long PeakResidentBytes(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  for (std::string line; std::getline(status, line);) {
    long kilobytes = 0;
    if (line.rfind("VmHWM:", 0) == 0 &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(6, line.size() - 9)), &kilobytes)) {
      return kilobytes * 1024;
    }
  }
  return -1;
}

namespace {

// The parent and the CPU time of the process whose /proc/<pid>/stat is at `path`; false if it
// cannot be read.
bool ReadStat(const std::string& path, long* parent, absl::Duration* cpu) {
  std::ifstream file(path);
  std::string stat;
  std::getline(file, stat);
  // Fields after the command (which may hold spaces), from field 3: ppid is 4, utime 14, stime
  // 15.
  const std::size_t close = stat.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  long utime = -1;
  long stime = -1;
  for (int index = 3; fields >> field; ++index) {
    if (index == 4) (void)absl::SimpleAtoi(field, parent);
    if (index == 14) (void)absl::SimpleAtoi(field, &utime);
    if (index == 15) {
      (void)absl::SimpleAtoi(field, &stime);
      break;
    }
  }
  if (utime < 0 || stime < 0) return false;
  *cpu =
      absl::Seconds(static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK)));
  return true;
}

}  // namespace

absl::Duration CpuTime(pid_t pid) {
  long parent = 0;
  absl::Duration cpu;
  const std::string path =
      pid > 0 ? absl::StrCat("/proc/", pid, "/stat") : std::string("/proc/self/stat");
  return ReadStat(path, &parent, &cpu) ? cpu : absl::Seconds(-1);
}

absl::Duration CpuTimeWithChildren(pid_t pid) {
  absl::Duration total = CpuTime(pid);
  if (total < absl::ZeroDuration()) return total;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
    long own = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &own)) continue;  // Not a process.
    long parent = 0;
    absl::Duration cpu;
    if (ReadStat(entry.path().string() + "/stat", &parent, &cpu) && parent == pid) total += cpu;
  }
  return total;
}

}  // namespace testing_support
