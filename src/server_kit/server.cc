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
#include "grpc/health/v1/health.pb.h"
#include "server_kit/log.h"
#include "server_kit/malformed_request.h"

namespace server_kit {
namespace {

constexpr char kLiveness[] = "liveness";
constexpr char kReadiness[] = "readiness";

absl::Status WritePortFile(const std::string& path, int grpc_port, int metrics_port) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream file(temporary, std::ios::trunc);
    file << "grpc=" << grpc_port << "\nmetrics=" << metrics_port << "\n";
    if (!file) return absl::UnavailableError(absl::StrCat("cannot write ", temporary));
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot rename ", temporary, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace

Server::Server(ServerOptions options)
    : options_(std::move(options)), registry_(std::make_shared<prometheus::Registry>()) {}

Server::~Server() { Shutdown(); }

void Server::RegisterService(grpc::Service* service, std::string full_name) {
  services_.push_back(service);
  registered_names_.push_back(std::move(full_name));
}

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

absl::Status Server::Start() {
  // Makes grpc.health.v1 describable through reflection: gRPC's own health service does not
  // register its descriptors.
  grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::ServerBuilder builder;
  grpc::ResourceQuota quota(absl::StrCat(options_.service_name, "-server"));
  quota.SetMaxThreads(options_.max_threads);
  builder.SetResourceQuota(quota);
  // gRPC's synchronous server keeps at most MAX_POLLERS idle threads (2 by default) and ends any
  // thread that finishes a call beyond that, then starts a new one when the next call arrives:
  // under load that is a thread created and destroyed per call (stacks mapped and unmapped,
  // thread-local set-up, TLB-shootdown interrupts: all visible in the patients service's
  // profile). Idle threads cost only memory, so keep every thread the quota allows.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 2);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                              options_.max_threads);
  builder.SetMaxReceiveMessageSize(options_.max_request_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options_.max_concurrent_streams);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ToMillis(options_.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ToMillis(options_.keepalive_timeout));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             ToMillis(options_.min_client_ping_interval));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  builder.AddListeningPort(options_.listen_address, grpc::InsecureServerCredentials(), &grpc_port_);
  for (grpc::Service* service : services_) builder.RegisterService(service);
  // The extra interceptors come first, so that the observer records the status a fault
  // interceptor substitutes, and the time it adds; before them, the one that explains a
  // request gRPC could not parse.
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(std::make_unique<MalformedRequestInterceptorFactory>());
  for (auto& factory : interceptor_factories_) creators.push_back(std::move(factory));
  auto observer = std::make_unique<RpcObserverFactory>(*registry_, options_.rpc_logging);
  observer_ = observer.get();
  creators.push_back(std::move(observer));
  builder.experimental().SetInterceptorCreators(std::move(creators));
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || grpc_port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.listen_address, " (address in use?)"));
  }

  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  // Not ready until the first readiness check passes.
  health->SetServingStatus(false);
  health->SetServingStatus(kReadiness, false);
  for (const std::string& name : registered_names_) health->SetServingStatus(name, false);
  health->SetServingStatus(kLiveness, true);

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
    if (absl::Status status = WritePortFile(options_.port_file, grpc_port_, metrics_port_);
        !status.ok()) {
      return status;
    }
  }
  Log(LogLevel::kInfo, "started",
      {{"grpc_port", absl::StrCat(grpc_port_)}, {"metrics_port", absl::StrCat(metrics_port_)}});
  return absl::OkStatus();
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
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  health->SetServingStatus("", ready);
  health->SetServingStatus(kReadiness, ready);
  for (const std::string& name : registered_names_) health->SetServingStatus(name, ready);
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
  std::atomic<bool> shut_down{false};
  std::thread shutter([&] {
    server_->Shutdown(absl::ToChronoTime(deadline));
    shut_down.store(true);
  });
  while (!shut_down.load() && observer_->in_flight() > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  if (!shut_down.load()) grpc_server_cancel_all_calls(server_->c_server());
  shutter.join();
  server_->GetHealthCheckService()->SetServingStatus(kLiveness, false);
  server_->Wait();
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
