// Runs a service binary as a child process for integration tests: fresh temporary directory,
// ports picked by the system (read back from --port_file), and control over its life (SIGTERM,
// SIGKILL, SIGSTOP/SIGCONT, restart with the same data).
#ifndef HOSPITAL_SRC_TESTING_SUPPORT_SERVICE_PROCESS_H_
#define HOSPITAL_SRC_TESTING_SUPPORT_SERVICE_PROCESS_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace testing_support {

// A directory under $TMPDIR (or /tmp) removed with everything in it on destruction.
class TempDir final {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class ServiceProcess final {
 public:
  // `binary` is started with `arguments` plus --listen, --metrics_listen (when `with_metrics`;
  // otherwise none), --admin_listen (loopback), --port_file (and the caller passes --db); an
  // argument in `arguments` given again later wins, so a test can pass --admin_listen=none.
  // Logs go to `log_path`.
  // `with_admin` false: no --admin_listen (a binary without one, such as the echo server).
  ServiceProcess(std::string binary, std::vector<std::string> arguments, std::string log_path,
                 std::string port_file, bool with_metrics = false, bool with_admin = true);
  ~ServiceProcess();
  ServiceProcess(const ServiceProcess&) = delete;
  ServiceProcess& operator=(const ServiceProcess&) = delete;

  // Variables ("NAME=value") set for the process from its next Start on, beside the test's own
  // environment; an empty list sets none again (a restart without HOSPITAL_CRASH_AT, say).
  void SetEnvironment(std::vector<std::string> variables) { environment_ = std::move(variables); }
  // Starts the process and waits (polling, up to `timeout`) until it has written its ports.
  // On a restart the same ports are asked for again, so clients keep working.
  absl::Status Start(absl::Duration timeout = absl::Seconds(20));
  // Sends SIGTERM and waits for the exit; returns the exit code (or 128 + signal).
  int Terminate(absl::Duration timeout = absl::Seconds(30));
  // Sends SIGTERM without waiting; WaitForExit collects the result.
  void SendTerminate();
  int WaitForExit(absl::Duration timeout = absl::Seconds(30)) { return Wait(timeout); }
  // Sends SIGKILL and reaps the process.
  void Kill();
  void Freeze();    // SIGSTOP
  void Unfreeze();  // SIGCONT
  bool running() const { return pid_ > 0; }

  int grpc_port() const { return grpc_port_; }
  pid_t pid() const { return pid_; }
  int metrics_port() const { return metrics_port_; }
  std::string address() const;
  // The admin listener (0 when off) and the plaintext health listener (0 unless
  // --health_listen was passed).
  int admin_port() const { return admin_port_; }
  std::string admin_address() const;
  int health_port() const { return health_port_; }
  std::string log() const;

 private:
  int Wait(absl::Duration timeout);

  const std::string binary_;
  const std::vector<std::string> arguments_;
  const std::string log_path_;
  const std::string port_file_;
  const bool with_metrics_;
  const bool with_admin_;
  std::vector<std::string> environment_;
  pid_t pid_ = -1;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  int admin_port_ = 0;
  int health_port_ = 0;
};

// Starts `argv` (argv[0] looked up in PATH when it has no '/') with stdout and stderr appended to
// `log_path`, no signal blocked, and the test's environment plus `extra_environment` ("NAME=value",
// replacing a variable of the same name); returns its pid.
//
// Nothing started here outlives the process that started it: each child is killed (SIGKILL) when
// its parent ends, however it ends, a failed REQUIRE, an uncaught exception, a crash or ctest's
// timeout included (PR_SET_PDEATHSIG, from one spawning thread that lives as long as the process).
//
// With `run_as`, the child takes that user and group (no supplementary groups) before it runs
// `argv`, e.g. a server that refuses to run as root; the log is then opened as that user.
struct RunAs {
  uid_t uid;
  gid_t gid;
};
absl::StatusOr<pid_t> Spawn(std::vector<std::string> argv, const std::string& log_path,
                            const std::vector<std::string>& extra_environment = {},
                            std::optional<RunAs> run_as = std::nullopt);

// A loopback port nothing listens on now (the kernel's choice for a socket bound to port 0).
int FreePort();

// Path of a binary built next to the tests (HOSPITAL_BINARY_DIR is set by CMake).
std::string BinaryPath(const std::string& name);
// Path of a file of the source tree, e.g. SourcePath("scripts/make-certs.sh").
std::string SourcePath(const std::string& relative);
// Runs `argv` to the end (output to `log_path`); an error unless it exits with 0.
absl::Status RunToCompletion(std::vector<std::string> argv, const std::string& log_path);

// The body of GET http://127.0.0.1:<port>/metrics.
absl::StatusOr<std::string> ScrapeMetrics(int port);

// The sum of the samples of `name` in a Prometheus text scrape whose labels include every
// `label="value"` in `labels` (e.g. {"target=\"morgue\""}).
double SumSamples(const std::string& scrape, const std::string& name,
                  const std::vector<std::string>& labels = {});

// Peak resident memory of a process in bytes (VmHWM), or -1.
long PeakResidentBytes(pid_t pid);

// CPU time (user + system) a process has used so far; `pid` 0 for this process. Negative if
// it cannot be read.
absl::Duration CpuTime(pid_t pid);
// The same for process `pid` and its children (a PostgreSQL server: the postmaster and every
// backend it forked), read from every process in /proc. Negative if `pid` has no entry.
absl::Duration CpuTimeWithChildren(pid_t pid);

}  // namespace testing_support

#endif  // HOSPITAL_SRC_TESTING_SUPPORT_SERVICE_PROCESS_H_
