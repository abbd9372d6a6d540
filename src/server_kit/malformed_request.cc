#include "server_kit/malformed_request.h"

#include <string>

#include <google/protobuf/descriptor.h>

#include "base/method_name.h"

namespace server_kit {
namespace {

// gRPC's deserializer's messages when the request buffer is missing
// (grpcpp/impl/codegen/proto_utils.h, GenericDeserialize, and ProtoBufferReader).
constexpr char kNoPayload[] = "No payload";
constexpr char kNoByteBufferReader[] = "Couldn't initialize byte buffer reader";

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

class MalformedRequestInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit MalformedRequestInterceptor(grpc::experimental::ServerRpcInfo* info) : info_(info) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    // The sync server hands interceptors a null message when it could not parse a unary
    // request's bytes. (A stream's reads end the same way when the client closes its side.)
    if (info_->type() == grpc::experimental::ServerRpcInfo::Type::UNARY &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      unparsable_ = true;
    }
    if (unparsable_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      // When no request message arrived at all (the stream ended before it), gRPC 1.51 says
      // INTERNAL "Couldn't initialize byte buffer reader" (or "No payload"): the transport's
      // doing, not a malformed request. Answered as INVALID_ARGUMENT, a caller would give up on
      // a request that a retry may deliver (a morgue resumed after a freeze was seen to answer
      // two well-formed confirmations so). A parse failure has an empty message.
      const grpc::Status original = methods->GetSendStatus();
      if (original.error_code() == grpc::StatusCode::INTERNAL &&
          (original.error_message() == kNoPayload ||
           original.error_message() == kNoByteBufferReader)) {
        methods->ModifySendStatus(grpc::Status(
            grpc::StatusCode::UNAVAILABLE,
            "request: no message arrived (the stream ended before it); nothing was changed"));
      } else {
        methods->ModifySendStatus(
            grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         "request: cannot be parsed as " + RequestTypeOf(info_->method()) +
                             " (is every string field valid UTF-8?); nothing was changed"));
      }
    }
    methods->Proceed();
  }

 private:
  grpc::experimental::ServerRpcInfo* const info_;
  bool unparsable_ = false;
};

}  // namespace

grpc::experimental::Interceptor* MalformedRequestInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new MalformedRequestInterceptor(info);
}

}  // namespace server_kit
