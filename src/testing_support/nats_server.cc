#include "testing_support/nats_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "testing_support/service_process.h"

namespace testing_support {

std::string NatsServerBinary() {
  if (std::filesystem::exists("/usr/sbin/nats-server")) return "/usr/sbin/nats-server";
  return "nats-server";
}

NatsServer::NatsServer(std::string directory, std::string extra_jetstream_config,
                       std::string extra_config)
    : directory_(std::move(directory)),
      extra_jetstream_config_(std::move(extra_jetstream_config)),
      extra_config_(std::move(extra_config)),
      port_(FreePort()) {}

NatsServer::~NatsServer() { Kill(); }

std::string NatsServer::url() const { return absl::StrCat("nats://127.0.0.1:", port_); }

std::string NatsServer::log() const {
  std::ifstream file(absl::StrCat(directory_, "/nats-server.log"));
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

absl::Status NatsServer::Start(absl::Duration timeout) {
  const std::string config = absl::StrCat(directory_, "/nats-server.conf");
  std::ofstream(config) << "listen: 127.0.0.1:" << port_ << "\n"
                        << "jetstream {\n  store_dir: \"" << directory_ << "/store\"\n  "
                        << extra_jetstream_config_ << "\n}\n"
                        << extra_config_ << "\n";
  const std::string log_path = absl::StrCat(directory_, "/nats-server.log");
  const std::size_t log_before = log().size();
  absl::StatusOr<pid_t> spawned = Spawn({NatsServerBinary(), "-c", config}, log_path);
  if (!spawned.ok()) return spawned.status();
  pid_ = *spawned;
  const absl::Time give_up = absl::Now() + timeout;
  while (absl::Now() < give_up) {
    if (absl::StrContains(log().substr(log_before), "Server is ready")) return absl::OkStatus();
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(absl::StrCat("nats-server exited during start-up:\n", log()));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::DeadlineExceededError(absl::StrCat("nats-server did not start:\n", log()));
}

void NatsServer::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

void NatsServer::Terminate() {
  if (pid_ <= 0) return;
  kill(pid_, SIGCONT);
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

void NatsServer::Freeze() {
  if (pid_ > 0) kill(pid_, SIGSTOP);
}

void NatsServer::Unfreeze() {
  if (pid_ > 0) kill(pid_, SIGCONT);
}

}  // namespace testing_support
