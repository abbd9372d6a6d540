// A real nats-server with JetStream as a child process, for tests and the benchmark: its store
// in a directory of the caller's, a free loopback port kept across restarts, and control over
// its life (SIGKILL, SIGSTOP/SIGCONT, restart on the same store).
#ifndef HOSPITAL_SRC_TESTING_SUPPORT_NATS_SERVER_H_
#define HOSPITAL_SRC_TESTING_SUPPORT_NATS_SERVER_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace testing_support {

class NatsServer final {
 public:
  // Picks the port now, so url() is known before Start. `directory` holds the config, the store
  // and the log. `extra_jetstream_config` goes inside the config's jetstream block (e.g.
  // "sync_interval: always"); `extra_config` at the top level (e.g. a tls block).
  explicit NatsServer(std::string directory, std::string extra_jetstream_config = "",
                      std::string extra_config = "");
  ~NatsServer();
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  // Starts the server (same port as before on a restart) and waits until it is ready.
  absl::Status Start(absl::Duration timeout = absl::Seconds(20));
  void Kill();      // SIGKILL, reaped
  void Freeze();    // SIGSTOP
  void Unfreeze();  // SIGCONT
  // SIGTERM (a clean shutdown), reaped.
  void Terminate();
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  std::string url() const;
  std::string log() const;

 private:
  const std::string directory_;
  const std::string extra_jetstream_config_;
  const std::string extra_config_;
  pid_t pid_ = -1;
  int port_ = 0;
};

// The nats-server executable: /usr/sbin/nats-server (Debian's), else from PATH.
std::string NatsServerBinary();

}  // namespace testing_support

#endif  // HOSPITAL_SRC_TESTING_SUPPORT_NATS_SERVER_H_
