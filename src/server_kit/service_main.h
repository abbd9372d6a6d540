// The main() of a service, shared by the three: flags, database, server, signals, shutdown.
//
//   int main(int argc, char** argv) {
//     return server_kit::ServiceMain(argc, argv, kMorgueDefinition,
//         [](server_kit::ServiceContext& context) -> absl::Status {
//           ... create the service on context.database, context.server.RegisterService(...) ...
//         });
//   }
//
// Flags shared by every service (each has the service's own default):
//   --listen              gRPC address, host:port (port 0: any free port)
//   --admin_listen        the admin listener (operator RPCs), loopback by default
//   --admin_token_file    the bearer token that admin changes need (admin_auth.h)
//   --health_listen       a plaintext listener for health alone (for probes), off by default
//   --tls_cert, --tls_key, --tls_ca, --tls_refresh_interval, --admin_tls_ca   TLS (tls.h)
//   --authz_policy        which callers may call which methods (caller_authorization.h)
//   --metrics_listen      Prometheus /metrics address, host:port (empty: none)
//   --db                  SQLite database file, created if missing
//   --shutdown_grace      time in-flight calls get to finish after SIGTERM/SIGINT
//   --port_file           where to write the bound ports once serving (for tests and scripts)
//   --replica_name        this process among the replicas (default: host name and port)
//   --rpc_logging         none | errors | all
//   --sqlite_synchronous  FULL | NORMAL
//   --max_request_bytes, --max_concurrent_streams   limits per request and per connection
#ifndef HOSPITAL_SRC_SERVER_KIT_SERVICE_MAIN_H_
#define HOSPITAL_SRC_SERVER_KIT_SERVICE_MAIN_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/security/credentials.h>

#include "absl/status/status.h"
#include "server_kit/database.h"
#include "server_kit/server.h"

namespace server_kit {

class AdminAuthenticator;
class FaultInjector;

struct ServiceDefinition {
  std::string name;  // "morgue"
  std::string usage;
  std::string default_listen;
  std::string default_admin_listen;
  std::string default_metrics_listen;
  std::string default_db;
  // Its migrations; a service with no PostgreSQL migrations refuses a PostgreSQL --db.
  Schema migrations;
};

class ServiceContext final {
 public:
  // `kept` holds what Keep is given; its owner destroys it after the server and before the
  // database.
  ServiceContext(Database& database_in, Server& server_in, std::vector<std::shared_ptr<void>>& kept)
      : database(database_in), server(server_in), kept_(kept) {}

  Database& database;
  Server& server;
  // The service's fault injector (the rules of --faults_file and FaultInjection), for work that
  // is not an RPC but should be faulted like one (event handling).
  FaultInjector* faults = nullptr;
  // Checks who asks for a change on the admin listener (for the service's own admin services).
  const AdminAuthenticator* admin = nullptr;
  // For channels to the other services: TLS with this service's certificate when --tls_cert
  // is given, else plaintext.
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials;
  // This process among the service's replicas (--replica_name): stable across its restarts,
  // unique among those running, for claims on rows that the replicas share.
  std::string replica_name;
  // Run after the server has drained, before the database closes (stop background work here).
  std::vector<std::function<void()>> on_shutdown;

  // Keeps `object` alive until after the server is destroyed and before the database closes
  // (services and what they use), and returns it. Kept objects are destroyed in the reverse
  // order of their Keep, so an object may use what was kept before it.
  template <typename T>
  T* Keep(std::unique_ptr<T> object) {
    T* raw = object.get();
    kept_.push_back(std::shared_ptr<T>(std::move(object)));
    return raw;
  }

 private:
  std::vector<std::shared_ptr<void>>& kept_;
};

// Parses flags, runs the service until SIGTERM or SIGINT, and returns the process exit code.
// `setup` registers the service's handlers; an error from it stops start-up.
int ServiceMain(int argc, char** argv, const ServiceDefinition& definition,
                const std::function<absl::Status(ServiceContext&)>& setup);

}  // namespace server_kit

#endif  // HOSPITAL_SRC_SERVER_KIT_SERVICE_MAIN_H_
