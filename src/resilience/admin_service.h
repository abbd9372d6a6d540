// resilience.v1.ResilienceAdmin: lets an operator list the circuit breakers of a process and
// force one open, disable it or reset it (protos/resilience/v1/admin.proto).
//
//   resilience::AdminService admin(targets, {
//       .authenticate = [&](const grpc::ServerContext& context, const std::string& method)
//           -> absl::StatusOr<std::string> { /* who is it, or UNAUTHENTICATED */ },
//       .audit = [](const resilience::AdminChange& change) { /* who, what, before, after */ }});
//   builder.RegisterService(&admin);   // on a listener only operators reach
//   $ grpcurl -plaintext localhost:50061 resilience.v1.ResilienceAdmin/ListCircuitBreakers
//
// Changes (force open, disable, reset) steer production traffic, so each must first pass the
// `authenticate` hook, which names the caller or refuses (its status is sent as is); without a
// hook every change is refused. AllowAnyCaller() is a hook for tests and trusted set-ups that
// lets everyone in. Listing is open to whoever reaches the service. Every change is reported to
// the audit hook after it took effect, with who asked and the breaker's state before and after;
// listing and refused requests change nothing and are not reported. Thread-safe; the registry
// must outlive the service.
#ifndef HOSPITAL_SRC_RESILIENCE_ADMIN_SERVICE_H_
#define HOSPITAL_SRC_RESILIENCE_ADMIN_SERVICE_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "resilience/target.h"
#include "resilience/v1/admin.grpc.pb.h"

namespace resilience {

// One change an operator made, for an audit log.
struct AdminChange {
  std::string peer;      // The caller's address, as gRPC names it ("ipv4:10.0.0.7:51234").
  std::string identity;  // The caller's authenticated identity (a certificate's), if any.
  std::string method;    // "ForceOpenCircuitBreaker", "DisableCircuitBreaker", ...
  std::string target;
  BreakerState before = BreakerState::kClosed;
  BreakerState after = BreakerState::kClosed;
};
using AdminAudit = std::function<void(const AdminChange&)>;
// Who is asking for `method` ("ForceOpenCircuitBreaker", ...): their identity for the audit
// line, or the error to send them (UNAUTHENTICATED, PERMISSION_DENIED).
using AdminAuthenticate = std::function<absl::StatusOr<std::string>(
    const grpc::ServerContext& context, const std::string& method)>;

struct AdminServiceOptions {
  // Asked before every change; without it, changes are refused.
  AdminAuthenticate authenticate;
  // Told of every change (on the handling thread; it must not block long).
  AdminAudit audit;
};

// Lets every caller change breakers, naming them by their certificate's identity if they have
// one, else "anyone". For tests, and for processes whose admin listener is itself the guard.
AdminAuthenticate AllowAnyCaller();

class AdminService final : public v1::ResilienceAdmin::Service {
 public:
  AdminService(TargetRegistry& targets, AdminServiceOptions options)
      : targets_(targets), options_(std::move(options)) {}

  grpc::Status ListCircuitBreakers(grpc::ServerContext* context,
                                   const v1::ListCircuitBreakersRequest* request,
                                   v1::ListCircuitBreakersResponse* response) override;
  grpc::Status ForceOpenCircuitBreaker(grpc::ServerContext* context,
                                       const v1::CircuitBreakerRequest* request,
                                       v1::CircuitBreakerStatus* response) override;
  grpc::Status DisableCircuitBreaker(grpc::ServerContext* context,
                                     const v1::CircuitBreakerRequest* request,
                                     v1::CircuitBreakerStatus* response) override;
  grpc::Status ResetCircuitBreaker(grpc::ServerContext* context,
                                   const v1::CircuitBreakerRequest* request,
                                   v1::CircuitBreakerStatus* response) override;

 private:
  // Finds the target named in `request`, or explains why not (INVALID_ARGUMENT, NOT_FOUND).
  absl::StatusOr<Target*> Find(const v1::CircuitBreakerRequest& request);
  // Finds the target, applies `change` to its breaker and describes it: the one place where
  // these handlers turn an error into a grpc::Status.
  grpc::Status Apply(const grpc::ServerContext& context, const char* method,
                     const v1::CircuitBreakerRequest& request, void (CircuitBreaker::*change)(),
                     v1::CircuitBreakerStatus* response);

  TargetRegistry& targets_;
  const AdminServiceOptions options_;
};

// The status of one target's guards, as the admin service reports it.
v1::CircuitBreakerStatus DescribeTarget(Target& target);

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_ADMIN_SERVICE_H_
