// The gRPC server around a service: health checking, reflection, per-RPC metrics and logs, a
// Prometheus /metrics endpoint, and a graceful shutdown.
//
// Up to three listeners, each a gRPC server of its own:
//   public  (listen_address)  the service's API; TLS when `credentials` says so.
//   admin   (admin_address)   operator surfaces (RegisterAdminService): loopback by default, so
//                             that only someone on the host (or kubectl port-forward) reaches
//                             it; its services authenticate their callers themselves
//                             (admin_auth.h).
//   health  (health_address)  grpc.health.v1 alone, always plaintext: Kubernetes' gRPC probes
//                             cannot speak TLS or present a client certificate, so with TLS on
//                             the public port they probe this one. Health says only whether the
//                             process serves, which is not worth protecting.
// Health and reflection are served on all three, with the same statuses.
//
//   server_kit::BlockTerminationSignals();          // first thing in main, before any thread
//   server_kit::Server server(options);
//   server.RegisterService(&my_service);
//   server.SetReadinessCheck([&] { return database->Ping(); });
//   if (auto status = server.Start(); !status.ok()) ...
//   server_kit::WaitForTerminationSignal();          // SIGTERM or SIGINT
//   server.Shutdown();                               // NOT_SERVING, drain, stop
//
// Health (grpc.health.v1.Health) answers for these names:
//   "liveness"                  SERVING from Start until the server stops; never depends on
//                               other services.
//   "readiness", "" and each    SERVING only while started, the readiness check passes (it is
//   registered service name     run every health_check_interval) and shutdown has not begun.
#ifndef HOSPITAL_SRC_SERVER_KIT_SERVER_H_
#define HOSPITAL_SRC_SERVER_KIT_SERVER_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "base/periodic_thread.h"
#include "base/sync.h"
#include "server_kit/rpc_observer.h"

namespace server_kit {

struct ServerOptions {
  // Short name for logs ("patients").
  std::string service_name;
  // host:port for gRPC; port 0 picks a free port.
  std::string listen_address;
  // How the public listener authenticates itself (and its clients): TLS credentials from
  // tls.h; null means plaintext.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // host:port of the admin listener; empty: none (admin services are then not served).
  std::string admin_address;
  // Null means plaintext.
  std::shared_ptr<grpc::ServerCredentials> admin_credentials;
  // host:port of the plaintext health-only listener; empty: none.
  std::string health_address;
  // host:port for the Prometheus endpoint (/metrics); port 0 picks a free port; empty: none.
  std::string metrics_address;
  // How long in-flight calls may run after shutdown begins before they are cancelled.
  absl::Duration shutdown_grace = absl::Seconds(10);
  // How often the readiness check runs.
  absl::Duration health_check_interval = absl::Seconds(1);
  // If set, "grpc=<port>\nmetrics=<port>\nadmin=<port>\nhealth=<port>\n" is written here once
  // the server is serving (0 for a listener that is off).
  std::string port_file;
  RpcLogging rpc_logging = RpcLogging::kErrors;
  // Most threads the public listener may use (its pollers and the handlers they run). The server
  // handles each call on a thread of its own, so without a bound a stalled downstream makes it
  // start a thread per waiting call; at the bound, gRPC fails new calls at once with
  // RESOURCE_EXHAUSTED, which the caller is told to retry after overload_pushback.
  int max_threads = 100;
  static constexpr int kMinThreads = 4;
  // How long a call refused for lack of threads is asked to wait before it is retried
  // (grpc-retry-pushback-ms, jittered per refusal: refused_calls.h); positive.
  absl::Duration overload_pushback = absl::Milliseconds(50);
  // The pushback's jitter; null: base::SystemRandom(). Must outlive the server.
  base::RandomSource* random = nullptr;
  // The admin and health listeners' own bound: their calls are few and short, and their own
  // threads let an operator and the probes be heard while the public listener is saturated.
  static constexpr int kSideListenerThreads = 8;
  // Limits against abusive or broken clients (each is per connection or per request):
  // The largest request message accepted; a larger one fails with RESOURCE_EXHAUSTED before
  // any handler runs. The services' requests are a few hundred bytes (every string field is
  // capped at validation), so 64 KiB is generous; gRPC's default is 4 MiB.
  int max_request_bytes = 64 * 1024;
  // Calls one connection may have open at once; HTTP/2 makes the client wait for a free stream
  // beyond it, so one connection cannot pile up calls (and their memory) without end. Above
  // max_threads on purpose: calls past the thread bound already fail at once with
  // RESOURCE_EXHAUSTED, and a lower cap would turn that fast refusal into queueing in the
  // client for a single busy connection (a load generator, another service's channel).
  int max_concurrent_streams = 1000;
  // Pings: the server pings a connection idle for keepalive_time and closes it if the answer
  // takes longer than keepalive_timeout (a client gone without closing); a client that pings
  // more often than every min_client_ping_interval without sending calls is told to go away
  // (GOAWAY "too_many_pings") after two such pings.
  absl::Duration keepalive_time = absl::Minutes(2);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  absl::Duration min_client_ping_interval = absl::Seconds(10);
};

class Server final {
 public:
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The registry for the service's own metrics; exported on /metrics.
  prometheus::Registry& metrics() { return *registry_; }
  // The same, for whatever must outlive the server and still update its metrics (background
  // work stopped after the server, callbacks of other libraries).
  std::shared_ptr<prometheus::Registry> shared_metrics() { return registry_; }

  // Before Start. `full_name` is the service's name for health checks, e.g.
  // MyService::service_full_name(). Services must outlive the server.
  void RegisterService(grpc::Service* service, std::string full_name);
  // Before Start. A service for the admin listener only; ignored (and not served anywhere)
  // when there is no admin listener. Services must outlive the server.
  void RegisterAdminService(grpc::Service* service);
  // Before Start. Extra interceptors for the public listener, placed before the built-in
  // observer.
  void AddInterceptorFactory(
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> factory);
  // Before Start. More metrics to serve on /metrics beside metrics(), such as
  // resilience::TargetRegistry::call_metrics().
  void AddCollectable(std::shared_ptr<prometheus::Collectable> collectable);
  // Before Start. The check that decides readiness; OK when absent.
  void SetReadinessCheck(std::function<absl::Status()> check);

  // Builds and starts the server. Readiness is reported once the first check passes.
  absl::Status Start();
  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }
  int admin_port() const { return admin_port_; }
  int health_port() const { return health_port_; }

  // Health goes NOT_SERVING, new calls are refused, in-flight calls get shutdown_grace to finish
  // and are then cancelled. Blocks until done. Safe to call more than once.
  void Shutdown();

 private:
  // Sets the readiness names' health (the readiness loop's result).
  void SetReady(bool ready);
  // Runs the readiness check and publishes its result.
  void CheckReadiness();
  // Sets `name`'s health on every listener.
  void SetHealth(const std::string& name, bool serving);
  // Builds and starts one listener with the common options.
  absl::StatusOr<std::unique_ptr<grpc::Server>> StartListener(
      const std::string& address, const std::shared_ptr<grpc::ServerCredentials>& credentials,
      const std::vector<grpc::Service*>& services,
      std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
          interceptors,
      int max_threads, int* port);

  const ServerOptions options_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  std::vector<grpc::Service*> services_;
  std::vector<grpc::Service*> admin_services_;
  std::vector<std::string> registered_names_;
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptor_factories_;
  std::function<absl::Status()> readiness_check_;
  // Shared by the listeners (each gets a forwarding factory), so that in_flight counts all.
  std::unique_ptr<RpcObserverFactory> observer_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> admin_server_;
  std::unique_ptr<grpc::Server> health_server_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  int admin_port_ = 0;
  int health_port_ = 0;
  std::optional<base::PeriodicThread> health_checker_;

  base::Mutex mutex_;
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  bool stopped_ ABSL_GUARDED_BY(mutex_) = false;
  bool ready_ ABSL_GUARDED_BY(mutex_) = false;
};

// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts later, so that
// WaitForTerminationSignal can receive them. Call first in main.
void BlockTerminationSignals();
// Waits for SIGTERM or SIGINT; returns the signal's name.
std::string WaitForTerminationSignal();

}  // namespace server_kit

#endif  // HOSPITAL_SRC_SERVER_KIT_SERVER_H_
