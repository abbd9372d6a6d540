// resilience.v1.ResilienceAdmin: lets an operator list the circuit breakers of a process and
// force one open, disable it or reset it (protos/resilience/v1/admin.proto).
//
//   resilience::AdminService admin(targets, [](const resilience::AdminChange& change) {
//     /* write an audit line: who, what, before, after */
//   });
//   builder.RegisterService(&admin);
//   $ grpcurl -plaintext localhost:50051 resilience.v1.ResilienceAdmin/ListCircuitBreakers
//
// Every change an operator makes (force open, disable, reset) is reported to the audit hook,
// after it took effect, with who asked and the breaker's state before and after; listing and
// refused requests change nothing and are not reported. Thread-safe; the registry must outlive
// the service.
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

class AdminService final : public v1::ResilienceAdmin::Service {
 public:
  // `audit`, if set, is told of every change (on the handling thread; it must not block long).
  explicit AdminService(TargetRegistry& targets, AdminAudit audit = nullptr)
      : targets_(targets), audit_(std::move(audit)) {}

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
  const AdminAudit audit_;
};

// The status of one target's guards, as the admin service reports it.
v1::CircuitBreakerStatus DescribeTarget(Target& target);

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_ADMIN_SERVICE_H_
