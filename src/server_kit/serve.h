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
// A failure that clients must tell apart without reading its message carries a reason (one
// upper-case word, WithErrorReason); Serve sends it in the kErrorReasonKey trailer, and a client
// reads it with ErrorReasonOf(context).
//
// Serve also keeps a call that an interceptor has refused from reaching the body: the caller
// policy (caller_authorization.h) and fault injection (fault_injection.h) mark such a call in its
// request metadata, and Serve answers it with their status without running the body, so neither
// a refused caller nor an injected failure ever has a side effect.
#ifndef HOSPITAL_SRC_SERVER_KIT_SERVE_H_
#define HOSPITAL_SRC_SERVER_KIT_SERVE_H_

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <grpcpp/client_context.h>
#include <grpcpp/server_context.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/grpc_status.h"

namespace server_kit {

// The request metadata keys by which interceptors mark a call they have decided to fail, so
// that Serve answers it without running the method. The value is the status:
// "<numeric code> <message>" (EncodeMarkedStatus). Clients cannot set them: each interceptor
// removes any value a client sent under its key before deciding.
// The caller policy refused the caller (caller_authorization.h).
inline constexpr std::string_view kAccessDeniedKey = "x-hospital-access-denied";
// Fault injection failed the call (fault_injection.h).
inline constexpr std::string_view kInjectedFaultKey = "x-hospital-injected-fault";

// The status the caller policy put on `context`'s call, if any.
std::optional<absl::Status> AccessDenied(const grpc::ServerContext& context);
// The status fault injection put on `context`'s call, if any.
std::optional<absl::Status> InjectedFault(const grpc::ServerContext& context);
// The metadata value that AccessDenied and InjectedFault read back as `status`.
std::string EncodeMarkedStatus(const absl::Status& status);

// The trailing metadata key that carries an error's reason.
inline constexpr std::string_view kErrorReasonKey = "x-hospital-error-reason";
// The reasons the services send.
// RecordDeath failed before changing anything because a downstream's circuit breaker is open.
inline constexpr std::string_view kReasonCircuitOpen = "CIRCUIT_OPEN";

// `status` with `reason` attached (as an absl::Status payload).
absl::Status WithErrorReason(absl::Status status, std::string_view reason);
// The reason attached to `status`, or "".
std::string ErrorReasonOf(const absl::Status& status);
// The reason the server sent with a finished call, or "".
std::string ErrorReasonOf(const grpc::ClientContext& context);

// Runs `body` (returning absl::StatusOr<Response>) unless the call carries an injected fault,
// and converts the result: OK moves the value into `response`; an error's reason, if any, goes
// into the trailing metadata.
template <typename Response, typename Body>
grpc::Status Serve(grpc::ServerContext* context, Response* response, Body&& body) {
  if (std::optional<absl::Status> denied = AccessDenied(*context)) {
    return base::ToGrpcStatus(*denied);
  }
  if (std::optional<absl::Status> fault = InjectedFault(*context)) {
    return base::ToGrpcStatus(*fault);
  }
  absl::StatusOr<Response> result = std::forward<Body>(body)();
  if (!result.ok()) {
    if (std::string reason = ErrorReasonOf(result.status()); !reason.empty()) {
      context->AddTrailingMetadata(std::string(kErrorReasonKey), reason);
    }
    return base::ToGrpcStatus(result.status());
  }
  *response = *std::move(result);
  return grpc::Status::OK;
}

}  // namespace server_kit

#endif  // HOSPITAL_SRC_SERVER_KIT_SERVE_H_
