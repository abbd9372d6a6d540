#include "server_kit/refused_calls.h"

#include <cmath>
#include <cstdint>
#include <string>

#include <google/protobuf/descriptor.h>
#include <prometheus/registry.h>

#include "absl/strings/str_cat.h"
#include "base/method_name.h"

namespace server_kit {
namespace {

// What gRPC 1.51 sends for the calls it answers itself (grpcpp/support/method_handler.h's
// ResourceExhaustedHandler, given the server's kServerThreadpoolExhausted; proto_utils.h's
// GenericDeserialize and proto_buffer_reader.h for a missing buffer).
constexpr char kThreadpoolExhausted[] = "Server Threadpool Exhausted";
constexpr char kNoPayload[] = "No payload";
constexpr char kNoByteBufferReader[] = "Couldn't initialize byte buffer reader";
// gRFC A6's trailer: the milliseconds a client should wait before it retries.
constexpr char kPushbackKey[] = "grpc-retry-pushback-ms";

// "hospital.patients.v1.CreatePatientRequest" for "/hospital.patients.v1.PatientsService/
// CreatePatient", or "request message" for a method this binary has no descriptor of.
std::string RequestTypeOf(const char* full_method) {
  if (const std::optional<base::MethodName> name = base::ParseMethodName(full_method)) {
    const google::protobuf::MethodDescriptor* method =
        google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
            std::string(name->service) + "." + std::string(name->method));
    if (method != nullptr) return method->input_type()->full_name();
  }
  return "request message";
}

class RefusedCallInterceptor final : public grpc::experimental::Interceptor {
 public:
  RefusedCallInterceptor(RefusedCallInterceptorFactory& factory,
                         grpc::experimental::ServerRpcInfo* info)
      : factory_(factory), info_(info) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    // The sync server hands interceptors a null message for a unary call it will not run. (A
    // stream's reads end the same way when the client closes its side.)
    if (info_->type() == grpc::experimental::ServerRpcInfo::Type::UNARY &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      refused_ = true;
    }
    if (refused_ && methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status original = methods->GetSendStatus();
      std::string pushback_ms;
      grpc::Status answer = factory_.Explain(original, info_->method(), pushback_ms);
      if (!pushback_ms.empty()) {
        methods->GetSendTrailingMetadata()->emplace(kPushbackKey, pushback_ms);
      }
      methods->ModifySendStatus(answer);
    }
    methods->Proceed();
  }

 private:
  RefusedCallInterceptorFactory& factory_;
  grpc::experimental::ServerRpcInfo* const info_;
  bool refused_ = false;
};

}  // namespace

prometheus::Family<prometheus::Counter>& RefusalsFamily(prometheus::Registry& registry) {
  return prometheus::BuildCounter()
      .Name("hospital_rpc_refusals_total")
      .Help(
          "Calls answered by gRPC before any handler ran, by listener and reason: "
          "threads_exhausted (busy: RESOURCE_EXHAUSTED with pushback, retryable), unparsable "
          "(INVALID_ARGUMENT), no_message (UNAVAILABLE), other.")
      .Register(registry);
}

RefusedCallInterceptorFactory::RefusedCallInterceptorFactory(
    RefusedCallOptions options, prometheus::Family<prometheus::Counter>& refusals,
    base::RandomSource& random)
    : options_(std::move(options)),
      random_(random),
      threads_exhausted_(
          refusals.Add({{"listener", options_.listener}, {"reason", "threads_exhausted"}})),
      unparsable_(refusals.Add({{"listener", options_.listener}, {"reason", "unparsable"}})),
      no_message_(refusals.Add({{"listener", options_.listener}, {"reason", "no_message"}})),
      other_(refusals.Add({{"listener", options_.listener}, {"reason", "other"}})) {}

grpc::experimental::Interceptor* RefusedCallInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new RefusedCallInterceptor(*this, info);
}

grpc::Status RefusedCallInterceptorFactory::Explain(const grpc::Status& original,
                                                    const char* full_method,
                                                    std::string& pushback_ms) {
  if (original.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
      original.error_message() == kThreadpoolExhausted) {
    threads_exhausted_.Increment();
    const double mean_ms = absl::ToDoubleMilliseconds(options_.pushback);
    pushback_ms = absl::StrCat(
        static_cast<std::int64_t>(std::llround(mean_ms * (0.5 + random_.Uniform01()))));
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("server busy: all ", options_.max_threads,
                     " threads of the listener are serving other calls (--max_threads); nothing "
                     "was changed; retry after grpc-retry-pushback-ms (",
                     pushback_ms, " ms)"));
  }
  if (original.error_code() == grpc::StatusCode::INTERNAL) {
    // No message arrived at all (the stream ended before it): the transport's doing, not a
    // malformed request. Answered as INVALID_ARGUMENT, a caller would give up on a request that
    // a retry may deliver (a morgue resumed after a freeze was seen to answer two well-formed
    // confirmations so).
    if (original.error_message() == kNoPayload || original.error_message() == kNoByteBufferReader) {
      no_message_.Increment();
      return grpc::Status(
          grpc::StatusCode::UNAVAILABLE,
          "request: no message arrived (the stream ended before it); nothing was changed");
    }
    unparsable_.Increment();
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("request: cannot be parsed as ", RequestTypeOf(full_method),
                                     " (is every string field valid UTF-8?); nothing was changed"));
  }
  other_.Increment();
  return original;
}

}  // namespace server_kit
