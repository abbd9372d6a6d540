#include "server_kit/rpc_observer.h"

#include <google/protobuf/descriptor.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/latency_buckets.h"
#include "base/method_name.h"
#include "server_kit/log.h"

namespace server_kit {
namespace {

// Splits "/package.Service/Method", keeping only methods the binary knows.
RpcObserverFactory::Labels LabelsOf(const std::string& full_method) {
  if (const std::optional<base::MethodName> name = base::ParseMethodName(full_method)) {
    if (google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
            std::string(name->service) + "." + std::string(name->method)) != nullptr) {
      return {std::string(name->service), std::string(name->method)};
    }
  }
  return {"unknown", "unknown"};
}

class RpcObserver final : public grpc::experimental::Interceptor {
 public:
  RpcObserver(RpcObserverFactory& factory, std::string method)
      : factory_(factory),
        method_(std::move(method)),
        labels_(factory_.RecordStart(method_)),
        start_(absl::Now()) {
    factory_.CallStarted();
  }
  ~RpcObserver() override { factory_.CallEnded(); }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      factory_.Record(method_, labels_, methods->GetSendStatus(),
                      absl::ToDoubleSeconds(absl::Now() - start_));
    }
    methods->Proceed();
  }

 private:
  RpcObserverFactory& factory_;
  const std::string method_;
  const RpcObserverFactory::Labels labels_;  // Resolved once per call.
  const absl::Time start_;
};

}  // namespace

bool ParseRpcLogging(const std::string& text, RpcLogging& out) {
  if (text == "none") {
    out = RpcLogging::kNone;
  } else if (text == "errors") {
    out = RpcLogging::kErrors;
  } else if (text == "all") {
    out = RpcLogging::kAll;
  } else {
    return false;
  }
  return true;
}

RpcObserverFactory::RpcObserverFactory(prometheus::Registry& registry, RpcLogging logging)
    : started_(prometheus::BuildCounter()
                   .Name("grpc_server_started_total")
                   .Help("RPCs started on the server.")
                   .Register(registry)),
      handled_(prometheus::BuildCounter()
                   .Name("grpc_server_handled_total")
                   .Help("RPCs completed on the server, by status code.")
                   .Register(registry)),
      handling_seconds_(prometheus::BuildHistogram()
                            .Name("grpc_server_handling_seconds")
                            .Help("Time from the start of an RPC to its status being sent.")
                            .Register(registry)),
      logging_(logging) {}

grpc::experimental::Interceptor* RpcObserverFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new RpcObserver(*this, info->method());
}

RpcObserverFactory::Labels RpcObserverFactory::RecordStart(const std::string& full_method) {
  Labels labels = LabelsOf(full_method);
  started_.Add({{"grpc_service", labels.service}, {"grpc_method", labels.method}}).Increment();
  return labels;
}

void RpcObserverFactory::Record(const std::string& full_method, const Labels& labels,
                                const grpc::Status& status, double seconds) {
  const std::string code =
      absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
  handled_
      .Add({{"grpc_service", labels.service}, {"grpc_method", labels.method}, {"grpc_code", code}})
      .Increment();
  handling_seconds_
      .Add({{"grpc_service", labels.service}, {"grpc_method", labels.method}},
           prometheus::Histogram::BucketBoundaries(base::kLatencyBucketsSeconds.begin(),
                                                   base::kLatencyBucketsSeconds.end()))
      .Observe(seconds);
  if (logging_ == RpcLogging::kAll || (logging_ == RpcLogging::kErrors && !status.ok())) {
    Log(status.ok() ? LogLevel::kInfo : LogLevel::kWarning, "rpc",
        {{"method", full_method},
         {"code", code},
         {"message", status.error_message()},
         {"ms", absl::StrFormat("%.3f", seconds * 1000)}});
  }
}

}  // namespace server_kit
