// resilience.v1.ResilienceAdmin: lets an operator list the circuit breakers of a process and
// force one open, disable it or reset it (protos/resilience/v1/admin.proto).
//
//   resilience::AdminService admin(targets);
//   builder.RegisterService(&admin);
//   $ grpcurl -plaintext localhost:50051 resilience.v1.ResilienceAdmin/ListCircuitBreakers
//
// Thread-safe; the registry must outlive the service.
#ifndef HOSPITAL_SRC_RESILIENCE_ADMIN_SERVICE_H_
#define HOSPITAL_SRC_RESILIENCE_ADMIN_SERVICE_H_

#include "absl/status/statusor.h"
#include "resilience/target.h"
#include "resilience/v1/admin.grpc.pb.h"

namespace resilience {

class AdminService final : public v1::ResilienceAdmin::Service {
 public:
  explicit AdminService(TargetRegistry& targets) : targets_(targets) {}

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
  grpc::Status Apply(const v1::CircuitBreakerRequest& request, void (CircuitBreaker::*change)(),
                     v1::CircuitBreakerStatus* response);

  TargetRegistry& targets_;
};

// The status of one target's guards, as the admin service reports it.
v1::CircuitBreakerStatus DescribeTarget(Target& target);

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_ADMIN_SERVICE_H_
