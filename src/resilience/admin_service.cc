#include "resilience/admin_service.h"

#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"

namespace resilience {
namespace {

v1::CircuitBreakerStatus::State ToProto(BreakerState state) {
  switch (state) {
    case BreakerState::kClosed:
      return v1::CircuitBreakerStatus::CLOSED;
    case BreakerState::kOpen:
      return v1::CircuitBreakerStatus::OPEN;
    case BreakerState::kHalfOpen:
      return v1::CircuitBreakerStatus::HALF_OPEN;
    case BreakerState::kForcedOpen:
      return v1::CircuitBreakerStatus::FORCED_OPEN;
    case BreakerState::kDisabled:
      return v1::CircuitBreakerStatus::DISABLED;
  }
  return v1::CircuitBreakerStatus::STATE_UNSPECIFIED;
}

}  // namespace

v1::CircuitBreakerStatus DescribeTarget(Target& target) {
  const BreakerSnapshot snapshot = target.breaker().Snapshot();
  v1::CircuitBreakerStatus status;
  status.set_target(target.name());
  status.set_state(ToProto(snapshot.state));
  status.set_window_calls(snapshot.window.calls);
  status.set_window_failures(snapshot.window.failures);
  status.set_window_slow_calls(snapshot.window.slow_calls);
  status.set_failure_rate_percent(snapshot.window.failure_rate_percent());
  status.set_slow_call_rate_percent(snapshot.window.slow_call_rate_percent());
  if (snapshot.state == BreakerState::kOpen) {
    *status.mutable_open_until() = google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
        absl::ToUnixNanos(snapshot.open_until));
  }
  status.set_consecutive_trips(snapshot.consecutive_trips);
  status.set_bulkhead_in_flight(target.bulkhead().in_flight());
  status.set_bulkhead_max_concurrent_calls(target.bulkhead().max_concurrent());
  status.set_retry_budget_tokens(target.budget().tokens());
  return status;
}

grpc::Status AdminService::Find(const v1::CircuitBreakerRequest& request, Target*& target) {
  if (request.target().empty()) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "target: must name a circuit breaker"};
  }
  target = targets_.FindTarget(request.target());
  if (target == nullptr) {
    return {grpc::StatusCode::NOT_FOUND,
            absl::StrCat("target: no circuit breaker named '", request.target(), "'")};
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::ListCircuitBreakers(grpc::ServerContext*,
                                               const v1::ListCircuitBreakersRequest*,
                                               v1::ListCircuitBreakersResponse* response) {
  for (Target* target : targets_.targets()) {
    *response->add_circuit_breakers() = DescribeTarget(*target);
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::ForceOpenCircuitBreaker(grpc::ServerContext*,
                                                   const v1::CircuitBreakerRequest* request,
                                                   v1::CircuitBreakerStatus* response) {
  Target* target = nullptr;
  if (grpc::Status status = Find(*request, target); !status.ok()) return status;
  target->breaker().ForceOpen();
  *response = DescribeTarget(*target);
  return grpc::Status::OK;
}

grpc::Status AdminService::DisableCircuitBreaker(grpc::ServerContext*,
                                                 const v1::CircuitBreakerRequest* request,
                                                 v1::CircuitBreakerStatus* response) {
  Target* target = nullptr;
  if (grpc::Status status = Find(*request, target); !status.ok()) return status;
  target->breaker().Disable();
  *response = DescribeTarget(*target);
  return grpc::Status::OK;
}

grpc::Status AdminService::ResetCircuitBreaker(grpc::ServerContext*,
                                               const v1::CircuitBreakerRequest* request,
                                               v1::CircuitBreakerStatus* response) {
  Target* target = nullptr;
  if (grpc::Status status = Find(*request, target); !status.ok()) return status;
  target->breaker().Reset();
  *response = DescribeTarget(*target);
  return grpc::Status::OK;
}

}  // namespace resilience
