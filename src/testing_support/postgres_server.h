// A real PostgreSQL 15 server as a child process, for tests and the benchmark, as NatsServer is
// for NATS: Debian's postgresql-15 binaries, a cluster in a fresh directory of its own, a free
// loopback port kept across restarts, and control over its life (SIGKILL, SIGSTOP/SIGCONT,
// restart on the same data).
//
// PostgreSQL refuses to run as root: when the test runs as root, the cluster belongs to, and the
// server runs as, the unprivileged `postgres` user the Debian package creates (Spawn's RunAs);
// otherwise as the test's own user. The superuser `hospital` logs in with a password over TCP
// (scram-sha-256; the password in password_file(), readable by the test) and without one on the
// server's Unix socket, which lives in the cluster's directory. Nothing outlives the test: the
// server is killed with its parent (PR_SET_PDEATHSIG) and the directory removed on destruction.
#ifndef HOSPITAL_SRC_TESTING_SUPPORT_POSTGRES_SERVER_H_
#define HOSPITAL_SRC_TESTING_SUPPORT_POSTGRES_SERVER_H_

#include <sys/types.h>

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "testing_support/service_process.h"

namespace testing_support {

class PostgresServer final {
 public:
  // Creates the directory (under $TMPDIR or /tmp) and picks the port; the cluster is made on
  // the first Start. `extra_config` lines go into postgresql.conf.
  explicit PostgresServer(std::string extra_config = "");
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // initdb on the first call; then starts the server and waits until it accepts connections.
  absl::Status Start(absl::Duration timeout = absl::Seconds(60));
  void Kill();      // SIGKILL, reaped
  void Freeze();    // SIGSTOP
  void Unfreeze();  // SIGCONT
  // SIGTERM (smart shutdown: waits for the sessions to end), reaped.
  void Terminate();

  // Creates database `name` owned by `hospital` (over the Unix socket).
  absl::Status CreateDatabase(const std::string& name);
  // Runs `sql` (several statements allowed, run as one transaction unless they say otherwise) as
  // `hospital` over the Unix socket, in `database`.
  absl::Status Execute(const std::string& sql, const std::string& database = "postgres");

  // Streaming replication. Before the first Start: this server's cluster becomes a base backup
  // of `primary` (running), which it then follows as a hot standby, naming itself `name` to it
  // (what the primary's synchronous_standby_names lists). Its password is the primary's.
  absl::Status MakeStandbyOf(const PostgresServer& primary, const std::string& name);
  // Makes the primary wait for standby `name` on every commit (synchronous_standby_names), and
  // waits until that standby is connected and synchronous.
  absl::Status RequireSynchronousStandby(const std::string& name,
                                         absl::Duration timeout = absl::Seconds(30));
  // A standby stops following and becomes a primary; returns once it accepts writes.
  absl::Status Promote(absl::Duration timeout = absl::Seconds(30));

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  const std::string& directory() const { return directory_; }
  // The cluster's directory, which holds the server's Unix socket.
  const std::string& socket_directory() const { return directory_; }
  static constexpr char kUser[] = "hospital";
  // A file holding the password of kUser (as --db_password_file reads it).
  std::string password_file() const;
  // libpq's URI of `database` over TCP, without the password: postgresql://hospital@127.0.0.1:P/db
  std::string Uri(const std::string& database) const;
  // libpq's key-value string of `database` over the Unix socket (no password needed).
  std::string SocketConnection(const std::string& database) const;
  std::string log() const;

 private:
  absl::Status InitializeCluster();

  std::string directory_;
  std::string extra_config_;
  std::optional<RunAs> run_as_;
  absl::Status setup_;  // Why the directory or the user could not be prepared.
  bool initialized_ = false;
  pid_t pid_ = -1;
  int port_ = 0;
};

// Where Debian's postgresql-15 puts initdb and postgres.
inline constexpr char kPostgresBinaries[] = "/usr/lib/postgresql/15/bin";

}  // namespace testing_support

#endif  // HOSPITAL_SRC_TESTING_SUPPORT_POSTGRES_SERVER_H_
