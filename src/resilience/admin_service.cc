#include "resilience/admin_service.h"

#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"
#include "base/grpc_status.h"

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
    // The breaker's clock is monotonic; a person reads wall time.
    const absl::Duration remaining = snapshot.open_until - target.environment().clock->Now();
    *status.mutable_open_until() = google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
        absl::ToUnixNanos(absl::Now() + remaining));
  }
  status.set_consecutive_trips(snapshot.consecutive_trips);
  status.set_bulkhead_in_flight(target.bulkhead().in_flight());
  status.set_bulkhead_max_concurrent_calls(target.bulkhead().max_concurrent());
  status.set_retry_budget_tokens(target.budget().tokens());
  if (std::shared_ptr<EndpointBalancer> balancer = target.balancer()) {
    // The balancer's clock is monotonic too.
    const absl::Time now = target.environment().clock->Now();
    const auto wall = [&](absl::Time at) {
      return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
          absl::ToUnixNanos(absl::Now() + (at - now)));
    };
    for (const EndpointSnapshot& seen : balancer->Snapshot()) {
      v1::EndpointStatus& endpoint = *status.add_endpoints();
      endpoint.set_address(seen.address);
      endpoint.set_ejected(seen.ejected);
      if (seen.ejected) {
        *endpoint.mutable_ejected_since() = wall(seen.ejected_since);
        *endpoint.mutable_ejected_until() = wall(seen.ejected_until);
      }
      endpoint.set_times_ejected(seen.times_ejected);
      endpoint.set_reachable(seen.reachable);
      endpoint.set_in_flight(seen.in_flight);
      endpoint.set_latency_seconds(absl::ToDoubleSeconds(seen.latency));
      endpoint.set_attempts(seen.attempts);
      endpoint.set_failures(seen.failures);
    }
  }
  return status;
}

absl::StatusOr<Target*> AdminService::Find(const v1::CircuitBreakerRequest& request) {
  if (request.target().empty()) {
    return absl::InvalidArgumentError("target: must name a circuit breaker");
  }
  Target* target = targets_.FindTarget(request.target());
  if (target == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("target: no circuit breaker named '", request.target(), "'"));
  }
  return target;
}

grpc::Status AdminService::Apply(const grpc::ServerContext& context, const char* method,
                                 const v1::CircuitBreakerRequest& request,
                                 void (CircuitBreaker::*change)(),
                                 v1::CircuitBreakerStatus* response) {
  if (!options_.authenticate) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "changes are refused: this process has no admin authentication");
  }
  absl::StatusOr<std::string> identity = options_.authenticate(context, method);
  if (!identity.ok()) return base::ToGrpcStatus(identity.status());
  absl::StatusOr<Target*> target = Find(request);
  if (!target.ok()) return base::ToGrpcStatus(target.status());
  CircuitBreaker& breaker = (*target)->breaker();
  const BreakerState before = breaker.state();
  (breaker.*change)();
  *response = DescribeTarget(**target);
  if (options_.audit) {
    AdminChange audited;
    audited.peer = context.peer();
    audited.identity = *std::move(identity);
    audited.method = method;
    audited.target = (*target)->name();
    audited.before = before;
    audited.after = breaker.state();
    options_.audit(audited);
  }
  return grpc::Status::OK;
}

AdminAuthenticate AllowAnyCaller() {
  return [](const grpc::ServerContext& context, const std::string&) -> absl::StatusOr<std::string> {
    std::string identity;
    if (const auto auth = context.auth_context(); auth != nullptr) {
      for (const grpc::string_ref& name : auth->GetPeerIdentity()) {
        if (!identity.empty()) identity += ",";
        identity.append(name.data(), name.size());
      }
    }
    return identity.empty() ? std::string("anyone") : identity;
  };
}

grpc::Status AdminService::ListCircuitBreakers(grpc::ServerContext*,
                                               const v1::ListCircuitBreakersRequest*,
                                               v1::ListCircuitBreakersResponse* response) {
  for (Target* target : targets_.targets()) {
    *response->add_circuit_breakers() = DescribeTarget(*target);
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::ForceOpenCircuitBreaker(grpc::ServerContext* context,
                                                   const v1::CircuitBreakerRequest* request,
                                                   v1::CircuitBreakerStatus* response) {
  return Apply(*context, "ForceOpenCircuitBreaker", *request, &CircuitBreaker::ForceOpen, response);
}

grpc::Status AdminService::DisableCircuitBreaker(grpc::ServerContext* context,
                                                 const v1::CircuitBreakerRequest* request,
                                                 v1::CircuitBreakerStatus* response) {
  return Apply(*context, "DisableCircuitBreaker", *request, &CircuitBreaker::Disable, response);
}

grpc::Status AdminService::ResetCircuitBreaker(grpc::ServerContext* context,
                                               const v1::CircuitBreakerRequest* request,
                                               v1::CircuitBreakerStatus* response) {
  return Apply(*context, "ResetCircuitBreaker", *request, &CircuitBreaker::Reset, response);
}

}  // namespace resilience
