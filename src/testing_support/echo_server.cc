#include "testing_support/echo_server.h"

#include <map>
#include <thread>

#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/sync.h"

namespace testing_support {

class EchoServer::Service final : public echo::v1::EchoService::CallbackService {
 public:
  std::atomic<int> requests{0};
  std::atomic<int> cancelled{0};
  bool record_metadata = true;
  mutable base::Mutex mutex;
  std::vector<std::multimap<std::string, std::string>> metadata ABSL_GUARDED_BY(mutex);

  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* context,
                                 const echo::v1::EchoRequest* request,
                                 echo::v1::EchoResponse* response) override {
    requests.fetch_add(1);
    if (record_metadata) {
      std::multimap<std::string, std::string> received;
      for (const auto& [key, value] : context->client_metadata()) {
        received.emplace(std::string(key.data(), key.size()),
                         std::string(value.data(), value.size()));
      }
      base::MutexLock lock(&mutex);
      metadata.push_back(std::move(received));
    }
    const bool first_attempt = context->client_metadata().find("grpc-previous-rpc-attempts") ==
                               context->client_metadata().end();
    const int delay_ms =
        request->delay_first_attempt_only() && !first_attempt ? 0 : request->delay_ms();
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (delay_ms == 0) {
      Answer(context, request, response, reactor);
      return reactor;
    }
    // Stalls on a thread of its own, so that stalled requests do not hold the server's
    // threads from the others; gives up as soon as the caller does. The call stays valid
    // until Finish, which the thread makes last.
    std::thread([this, context, request, response, reactor, delay_ms] {
      const absl::Time stall_until = absl::Now() + absl::Milliseconds(delay_ms);
      while (absl::Now() < stall_until && !context->IsCancelled()) {
        absl::SleepFor(absl::Milliseconds(1));
      }
      if (context->IsCancelled()) cancelled.fetch_add(1);
      Answer(context, request, response, reactor);
    }).detach();
    return reactor;
  }

  void Answer(grpc::CallbackServerContext* context, const echo::v1::EchoRequest* request,
              echo::v1::EchoResponse* response, grpc::ServerUnaryReactor* reactor) {
    if (!request->pushback_ms().empty()) {
      context->AddTrailingMetadata("grpc-retry-pushback-ms", request->pushback_ms());
    }
    if (request->fail_with_code() != 0) {
      reactor->Finish(grpc::Status(static_cast<grpc::StatusCode>(request->fail_with_code()),
                                   "failure requested"));
      return;
    }
    response->set_message(request->message());
    reactor->Finish(grpc::Status::OK);
  }
};

EchoServer::EchoServer(grpc::Service* extra_service, const std::string& address,
                       bool record_metadata, std::shared_ptr<grpc::ServerCredentials> credentials)
    : service_(std::make_unique<Service>()) {
  service_->record_metadata = record_metadata;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(
      address, credentials != nullptr ? credentials : grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service_.get());
  if (extra_service != nullptr) builder.RegisterService(extra_service);
  server_ = builder.BuildAndStart();
  address_ = absl::StrCat("127.0.0.1:", port);
}

int EchoServer::requests_received() const { return service_->requests.load(); }

int EchoServer::requests_cancelled() const { return service_->cancelled.load(); }

std::vector<std::string> EchoServer::MetadataSeen(const std::string& key) const {
  base::MutexLock lock(&service_->mutex);
  std::vector<std::string> values;
  for (const auto& request : service_->metadata) {
    auto [first, last] = request.equal_range(key);
    for (auto it = first; it != last; ++it) values.push_back(it->second);
  }
  return values;
}

EchoServer::~EchoServer() { server_->Shutdown(std::chrono::system_clock::now()); }

}  // namespace testing_support
