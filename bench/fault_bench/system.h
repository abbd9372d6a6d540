// The processes of one run: the patients service, the morgue and the appointments service on
// fresh databases, with what the variant's pattern needs beside them (a nats-server, the
// batch_sync job, a shared directory), and the handles the benchmark drives them by: channels,
// the admin listener, database locks, and the seeding of patients. On Storage::kPostgres the
// databases live on a PostgreSQL primary of the run's own with a synchronous standby, and the
// services reach them through a two-host URI (target_session_attrs=read-write), so that a
// promoted standby takes over.
#ifndef HOSPITAL_BENCH_FAULT_BENCH_SYSTEM_H_
#define HOSPITAL_BENCH_FAULT_BENCH_SYSTEM_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/security/credentials.h>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "fault_bench/run.h"
#include "fault_bench/scenario.h"
#include "fault_bench/variant.h"
#include "testing_support/nats_server.h"
#include "testing_support/postgres_server.h"
#include "testing_support/service_process.h"

namespace fault_bench {

// The admin token every service of a run accepts (written to <dir>/token).
inline constexpr char kBenchToken[] = "bench-token";

// A client context whose deadline is `timeout` from now.
std::unique_ptr<grpc::ClientContext> CallContext(absl::Duration timeout);

class DatabaseLock;

class System {
 public:
  // Prepares the processes in `dir` (started by Start). `morgue_flags` are the scenario's for
  // the morgue (Scenario::morgue_flags).
  System(const RunOptions& options, const Variant& variant, const std::string& dir,
         const std::vector<std::string>& morgue_flags = {});
  ~System();

  // The PostgreSQL servers, the broker, the morgue and the appointments service, then the
  // patients service, then the batch job (after the services, which create the databases it
  // writes into).
  absl::Status Start();
  // Terminates every process and waits for it; releases the database locks.
  void Stop();

  // The asynchronous variant's nats-server; null for the others.
  testing_support::NatsServer* broker() { return broker_.get(); }
  // The shared-database variant's batch job; null for the others.
  testing_support::ServiceProcess* sync_job() { return sync_job_.get(); }

  // The PostgreSQL primary and standby of a variant on Storage::kPostgres; null on SQLite.
  testing_support::PostgresServer* primary() { return primary_.get(); }
  testing_support::PostgresServer* standby() { return standby_.get(); }
  // libpq's connection string to `service`'s database on whichever of the two servers takes
  // writes (over their Unix sockets, no password); empty on SQLite.
  std::string PostgresConnection(Service service) const;
  // `service`'s SQLite file (on Storage::kSqlite).
  std::string SqlitePath(Service service) const;

  // Write-locks `service`'s database until UnlockDatabase (SQLite only: FAILED_PRECONDITION on
  // PostgreSQL).
  absl::Status LockDatabase(Service service);
  void UnlockDatabase(Service service);

  // A channel to `service`'s public listener, or to its admin listener (faults, breakers), with
  // the variant's credentials.
  std::shared_ptr<grpc::Channel> Channel(Service service);
  std::shared_ptr<grpc::Channel> AdminChannel(Service service);

  // The process of `service` (the patients service's for the broker, which has none).
  testing_support::ServiceProcess& process(Service service);

 private:
  // With Variant::tls: certificates as an operator makes them, one per service and one for
  // the bench; sets tls_status_ and credentials_.
  void MakeCertificates();
  // The process of service `name` with `flags` and those every service of a run gets.
  std::unique_ptr<testing_support::ServiceProcess> MakeService(const std::string& name,
                                                               std::vector<std::string> flags);
  // The batch job's process, with its flags.
  std::unique_ptr<testing_support::ServiceProcess> MakeSyncJob();

  const RunOptions options_;
  const bool tls_;
  const std::string dir_;
  std::unique_ptr<testing_support::PostgresServer> primary_;
  std::unique_ptr<testing_support::PostgresServer> standby_;
  std::unique_ptr<testing_support::NatsServer> broker_;
  std::unique_ptr<testing_support::ServiceProcess> sync_job_;
  std::map<Service, std::unique_ptr<DatabaseLock>> locks_;
  std::unique_ptr<testing_support::ServiceProcess> morgue_;
  std::unique_ptr<testing_support::ServiceProcess> appointments_;
  std::unique_ptr<testing_support::ServiceProcess> patients_;
  // The patients service's flags but the downstream addresses, known once those started.
  std::vector<std::string> patients_flags_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_ = grpc::InsecureChannelCredentials();
  absl::Status tls_status_;
};

// Creates `patients` patients with `appointments_each` future appointments each, and appends
// their ids to `ids`.
absl::Status Seed(System& system, int patients, int appointments_each,
                  std::vector<std::string>& ids);

}  // namespace fault_bench

#endif  // HOSPITAL_BENCH_FAULT_BENCH_SYSTEM_H_
