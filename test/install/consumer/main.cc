// Builds a target registry from a policy and makes one guarded call that fails (nothing listens
// on the address): proof that the installed headers, libraries and CMake package are complete.
#include <cstdio>

#include <prometheus/registry.h>

#include "base/clock.h"
#include "resilience/grpc_call.h"
#include "resilience/policy.h"
#include "resilience/target.h"
#include "resilience/v1/admin.grpc.pb.h"

int main() {
  base::RealEnvironment env;
  prometheus::Registry registry;
  absl::StatusOr<resilience::Policy> policy = resilience::ParsePolicyJson(
      R"({"defaultTarget": {"methodConfig": [{"timeout": "1s"}]}})");
  if (!policy.ok()) return 1;
  resilience::TargetRegistry targets(*std::move(policy), env.environment(), registry);
  auto stub = resilience::v1::ResilienceAdmin::NewStub(resilience::CreateChannel("127.0.0.1:1"));
  resilience::GuardedMethod& method =
      targets.GetTarget("nowhere").Method("/resilience.v1.ResilienceAdmin/ListCircuitBreakers");
  resilience::v1::ListCircuitBreakersResponse response;
  const absl::Status status = resilience::CallUnaryBlocking<
      resilience::v1::ListCircuitBreakersRequest, resilience::v1::ListCircuitBreakersResponse>(
      method,
      [s = stub.get()](grpc::ClientContext* context,
                       const resilience::v1::ListCircuitBreakersRequest* request,
                       resilience::v1::ListCircuitBreakersResponse* reply,
                       std::function<void(grpc::Status)> done) {
        s->async()->ListCircuitBreakers(context, request, reply, std::move(done));
      },
      {}, &response);
  std::printf("call to a closed port: %s\n", status.ToString().c_str());
  return status.code() == absl::StatusCode::kUnavailable ? 0 : 1;
}
