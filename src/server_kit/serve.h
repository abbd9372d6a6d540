// The one place where a handler's result becomes a gRPC answer.
//
// A handler's body works in absl::Status (validation, storage, workflows all return it) and is
// converted to grpc::Status once, here:
//
//   grpc::Status MorgueService::ReleaseBody(grpc::ServerContext* context,
//                                           const ReleaseBodyRequest* request,
//                                           Admission* response) {
//     return server_kit::Serve(context, response, [&]() -> absl::StatusOr<Admission> {
//       RETURN_IF_ERROR(ValidateId("admission_id", request->admission_id()));
//       return repository_.Release(...);
//     });
//   }
//
// Serve also keeps a call that fault injection has aborted from reaching the body: the fault
// interceptor (fault_injection.h) marks such a call in its request metadata, and Serve answers
// it with the injected status without running the body, so an injected failure never has a side
// effect.
#ifndef HOSPITAL_SRC_SERVER_KIT_SERVE_H_
#define HOSPITAL_SRC_SERVER_KIT_SERVE_H_

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <grpcpp/server_context.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/grpc_status.h"

namespace server_kit {

// The request metadata key by which the fault interceptor marks a call it has failed. Its value
// is the injected status: "<numeric code> <message>". Clients cannot set it: the interceptor
// removes any value a client sent before deciding.
inline constexpr std::string_view kInjectedFaultKey = "x-hospital-injected-fault";

// The status fault injection put on `context`'s call, if any.
std::optional<absl::Status> InjectedFault(const grpc::ServerContext& context);
// The metadata value that InjectedFault reads back as `status`.
std::string EncodeInjectedFault(const absl::Status& status);

// Runs `body` (returning absl::StatusOr<Response>) unless the call carries an injected fault,
// and converts the result: OK moves the value into `response`.
template <typename Response, typename Body>
grpc::Status Serve(const grpc::ServerContext* context, Response* response, Body&& body) {
  if (std::optional<absl::Status> fault = InjectedFault(*context)) {
    return base::ToGrpcStatus(*fault);
  }
  absl::StatusOr<Response> result = std::forward<Body>(body)();
  if (!result.ok()) return base::ToGrpcStatus(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

}  // namespace server_kit

#endif  // HOSPITAL_SRC_SERVER_KIT_SERVE_H_
