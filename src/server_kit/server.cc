#include "server_kit/server.h"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <fstream>

#include <grpc/grpc.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "grpc/health/v1/health.pb.h"
#include "server_kit/log.h"
#include "server_kit/refused_calls.h"

namespace server_kit {
namespace {

constexpr char kLiveness[] = "liveness";
constexpr char kReadiness[] = "readiness";

absl::Status WritePortFile(const std::string& path, const std::string& contents) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream file(temporary, std::ios::trunc);
    file << contents;
    if (!file) return absl::UnavailableError(absl::StrCat("cannot write ", temporary));
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot rename ", temporary, " to ", path));
  }
  return absl::OkStatus();
}

// Lends one factory to several servers: a builder takes ownership of the factories it is given,
// and the observer must count the calls of every listener.
class ForwardingInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit ForwardingInterceptorFactory(ServerInterceptorFactoryInterface& target)
      : target_(target) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return target_.CreateServerInterceptor(info);
  }

 private:
  ServerInterceptorFactoryInterface& target_;
};

}  // namespace

Server::Server(ServerOptions options)
    : options_(std::move(options)), registry_(std::make_shared<prometheus::Registry>()) {}

Server::~Server() { Shutdown(); }

void Server::RegisterService(grpc::Service* service, std::string full_name) {
  services_.push_back(service);
  registered_names_.push_back(std::move(full_name));
}

void Server::RegisterAdminService(grpc::Service* service) { admin_services_.push_back(service); }

void Server::AddInterceptorFactory(
    std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> factory) {
  interceptor_factories_.push_back(std::move(factory));
}

void Server::AddCollectable(std::shared_ptr<prometheus::Collectable> collectable) {
  collectables_.push_back(std::move(collectable));
}

void Server::SetReadinessCheck(std::function<absl::Status()> check) {
  readiness_check_ = std::move(check);
}

namespace {

int ToMillis(absl::Duration duration) {
  return static_cast<int>(std::min<std::int64_t>(absl::ToInt64Milliseconds(duration), INT32_MAX));
}

}  // namespace

absl::StatusOr<std::unique_ptr<grpc::Server>> Server::StartListener(
    const std::string& address, const std::shared_ptr<grpc::ServerCredentials>& credentials,
    const std::vector<grpc::Service*>& services,
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        interceptors,
    int max_threads, int* port) {
  grpc::ServerBuilder builder;
  grpc::ResourceQuota quota(absl::StrCat(options_.service_name, "-server-", address));
  quota.SetMaxThreads(max_threads);
  builder.SetResourceQuota(quota);
  // gRPC's synchronous server keeps at most MAX_POLLERS idle threads (2 by default) and ends any
  // thread that finishes a call beyond that, then starts a new one when the next call arrives:
  // under load that is a thread created and destroyed per call (stacks mapped and unmapped,
  // thread-local set-up, TLB-shootdown interrupts: all visible in the patients service's
  // profile). Idle threads cost only memory, so keep every thread the quota allows.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 2);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, max_threads);
  builder.SetMaxReceiveMessageSize(options_.max_request_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options_.max_concurrent_streams);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ToMillis(options_.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ToMillis(options_.keepalive_timeout));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             ToMillis(options_.min_client_ping_interval));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  // gRPC sets SO_REUSEPORT by default, so a second process on a port in use would start and
  // take half its connections; one listener per port keeps "address in use" an error and the
  // host and port a replica's name (--replica_name).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(
      address, credentials != nullptr ? credentials : grpc::InsecureServerCredentials(), port);
  for (grpc::Service* service : services) builder.RegisterService(service);
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || *port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address, " (address in use?)"));
  }
  // Not ready until the first readiness check passes.
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(false);
  health->SetServingStatus(kReadiness, false);
  for (const std::string& name : registered_names_) health->SetServingStatus(name, false);
  health->SetServingStatus(kLiveness, true);
  return server;
}

absl::Status Server::Start() {
  // Makes grpc.health.v1 describable through reflection: gRPC's own health service does not
  // register its descriptors.
  grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  observer_ = std::make_unique<RpcObserverFactory>(*registry_, options_.rpc_logging);
  prometheus::Family<prometheus::Counter>& refusals = RefusalsFamily(*registry_);
  base::RandomSource& random = options_.random != nullptr ? *options_.random : base::SystemRandom();
  // Every listener first explains the calls gRPC refused before any handler (busy, unparsable,
  // no message), so that the other interceptors and the observer see the status sent, and
  // observes calls last.
  const auto interceptors = [&](const char* listener, int max_threads, auto extra) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(std::make_unique<RefusedCallInterceptorFactory>(
        RefusedCallOptions{listener, max_threads, options_.overload_pushback}, refusals, random));
    for (auto& factory : extra) creators.push_back(std::move(factory));
    creators.push_back(std::make_unique<ForwardingInterceptorFactory>(*observer_));
    return creators;
  };
  // The extra interceptors sit between the two, so that the observer records the status a
  // fault interceptor substitutes, and the time it adds.
  ASSIGN_OR_RETURN(server_, StartListener(options_.listen_address, options_.credentials, services_,
                                          interceptors("public", options_.max_threads,
                                                       std::move(interceptor_factories_)),
                                          options_.max_threads, &grpc_port_));
  using NoInterceptors =
      std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>;
  if (!options_.admin_address.empty()) {
    ASSIGN_OR_RETURN(
        admin_server_,
        StartListener(options_.admin_address, options_.admin_credentials, admin_services_,
                      interceptors("admin", ServerOptions::kSideListenerThreads, NoInterceptors()),
                      ServerOptions::kSideListenerThreads, &admin_port_));
  }
  if (!options_.health_address.empty()) {
    ASSIGN_OR_RETURN(
        health_server_,
        StartListener(options_.health_address, nullptr, {},
                      interceptors("health", ServerOptions::kSideListenerThreads, NoInterceptors()),
                      ServerOptions::kSideListenerThreads, &health_port_));
  }

  if (!options_.metrics_address.empty()) {
    try {
      exposer_ = std::make_unique<prometheus::Exposer>(options_.metrics_address);
    } catch (const std::exception& error) {
      return absl::UnavailableError(
          absl::StrCat("cannot serve metrics on ", options_.metrics_address, ": ", error.what()));
    }
    exposer_->RegisterCollectable(registry_);
    for (const auto& collectable : collectables_) exposer_->RegisterCollectable(collectable);
    const std::vector<int> ports = exposer_->GetListeningPorts();
    if (!ports.empty()) metrics_port_ = ports.front();
  }

  health_checker_.emplace(options_.health_check_interval, [this] { CheckReadiness(); });
  if (!options_.port_file.empty()) {
    RETURN_IF_ERROR(
        WritePortFile(options_.port_file,
                      absl::StrCat("grpc=", grpc_port_, "\nmetrics=", metrics_port_,
                                   "\nadmin=", admin_port_, "\nhealth=", health_port_, "\n")));
  }
  Log(LogLevel::kInfo, "started",
      {{"grpc_port", absl::StrCat(grpc_port_)},
       {"tls", options_.credentials != nullptr ? "on" : "off"},
       {"metrics_port", absl::StrCat(metrics_port_)},
       {"admin_port", absl::StrCat(admin_port_)},
       {"health_port", absl::StrCat(health_port_)}});
  return absl::OkStatus();
}

void Server::SetHealth(const std::string& name, bool serving) {
  for (grpc::Server* server : {server_.get(), admin_server_.get(), health_server_.get()}) {
    if (server != nullptr) server->GetHealthCheckService()->SetServingStatus(name, serving);
  }
}

void Server::SetReady(bool ready) {
  bool changed = false;
  {
    base::MutexLock lock(&mutex_);
    if (stopping_) ready = false;
    changed = ready != ready_;
    ready_ = ready;
  }
  if (server_ == nullptr) return;
  SetHealth("", ready);
  SetHealth(kReadiness, ready);
  for (const std::string& name : registered_names_) SetHealth(name, ready);
  if (changed) Log(LogLevel::kInfo, ready ? "ready" : "not_ready");
}

void Server::CheckReadiness() {
  absl::Status status = readiness_check_ ? readiness_check_() : absl::OkStatus();
  if (!status.ok()) {
    Log(LogLevel::kWarning, "readiness_check_failed", {{"error", status.ToString()}});
  }
  SetReady(status.ok());
}

void Server::Shutdown() {
  {
    base::MutexLock lock(&mutex_);
    if (stopped_) return;
    stopped_ = true;
    stopping_ = true;
  }
  if (health_checker_) health_checker_->Stop();
  if (server_ == nullptr) return;
  SetReady(false);
  Log(LogLevel::kInfo, "draining", {{"grace", absl::FormatDuration(options_.shutdown_grace)}});
  // Shutdown refuses new calls at once and waits for in-flight ones until the deadline, then
  // cancels them. It also waits for clients to close their connections, which an idle client
  // holding a channel does not do; so once no call is in flight, the connections are closed
  // from here instead of waiting out the grace period.
  const absl::Time deadline = absl::Now() + options_.shutdown_grace;
  // Health stays up until the end, so that probes see the drain rather than a closed port.
  std::vector<grpc::Server*> servers;
  for (grpc::Server* server : {server_.get(), admin_server_.get(), health_server_.get()}) {
    if (server != nullptr) servers.push_back(server);
  }
  std::atomic<int> shut_down_count{0};
  std::vector<std::thread> shutters;
  for (grpc::Server* server : servers) {
    shutters.emplace_back([&, server] {
      server->Shutdown(absl::ToChronoTime(deadline));
      shut_down_count.fetch_add(1);
    });
  }
  const auto all_shut_down = [&] {
    return shut_down_count.load() == static_cast<int>(servers.size());
  };
  while (!all_shut_down() && observer_->in_flight() > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  if (!all_shut_down()) {
    for (grpc::Server* server : servers) grpc_server_cancel_all_calls(server->c_server());
  }
  for (std::thread& shutter : shutters) shutter.join();
  SetHealth(kLiveness, false);
  for (grpc::Server* server : servers) server->Wait();
  exposer_.reset();
  Log(LogLevel::kInfo, "stopped");
}

void BlockTerminationSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

std::string WaitForTerminationSignal() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  int received = 0;
  while (sigwait(&signals, &received) != 0) {
  }
  return received == SIGTERM ? "SIGTERM" : "SIGINT";
}

}  // namespace server_kit
