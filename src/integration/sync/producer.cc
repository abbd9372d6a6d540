#include "integration/sync/producer.h"

#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "integration/sync/downstreams.h"
#include "resilience/admin_service.h"
#include "resilience/grpc_call.h"
#include "resilience/policy.h"
#include "resilience/target.h"
#include "server_kit/admin_auth.h"
#include "server_kit/log.h"

ABSL_FLAG(std::string, morgue_address, "localhost:50052",
          "The morgue service: host:port, or its replicas as ipv4:host:port,host:port,... or "
          "dns:///name:port (every address the name resolves to)");
ABSL_FLAG(std::string, appointments_address, "localhost:50053",
          "The appointments service, in the forms --morgue_address takes");
ABSL_FLAG(std::string, resilience_policy, "",
          "JSON resilience policy for calls to morgue and appointments (see "
          "protos/resilience/v1/example_policy.json); empty: the library's defaults (a 30s "
          "timeout, no retries, a circuit breaker per service that opens for 5s when half of at "
          "least 20 of the last 100 calls failed, no bulkhead) with a 100ms deadline margin");
ABSL_FLAG(bool, resilience_admin, true,
          "Serve resilience.v1.ResilienceAdmin on the admin listener (list breakers; force open, "
          "disable and reset them with the admin credentials)");

namespace integration::sync {
namespace {

constexpr char kDefaultPolicyJson[] =
    R"({"defaultTarget": {"methodConfig": [{"name": [{}], "deadlineMargin": "0.1s"}]}})";

// What the module owns, torn down in reverse order.
struct SyncRuntime {
  std::unique_ptr<resilience::TargetRegistry> targets;
  std::unique_ptr<GrpcDownstreams> downstreams;
  std::unique_ptr<SynchronousDeathWorkflow> workflow;
  std::unique_ptr<resilience::AdminService> admin;
};

// --resilience_policy, or the defaults with a deadline margin.
absl::StatusOr<resilience::Policy> PolicyFromFlags() {
  // Without a policy, calls still end kDefaultDeadlineMargin before the caller's deadline, so
  // that the caller hears UNAVAILABLE naming the service that was too slow, not a bare
  // DEADLINE_EXCEEDED of its own.
  const std::string policy_path = absl::GetFlag(FLAGS_resilience_policy);
  if (policy_path.empty()) {
    server_kit::Log(server_kit::LogLevel::kWarning, "no_resilience_policy",
                    {{"hint", "pass --resilience_policy; using the library's defaults"}});
    return *resilience::ParsePolicyJson(kDefaultPolicyJson);
  }
  absl::StatusOr<resilience::Policy> loaded = resilience::LoadPolicyFile(policy_path);
  if (!loaded.ok()) {
    return absl::Status(loaded.status().code(),
                        absl::StrCat("--resilience_policy: ", loaded.status().message()));
  }
  return loaded;
}

// ResilienceAdmin over `targets`, its changes authenticated with the admin credentials and
// audited in the log: who, what, before and after.
std::unique_ptr<resilience::AdminService> MakeAdminService(
    const server_kit::ServiceContext& context, resilience::TargetRegistry& targets) {
  resilience::AdminServiceOptions admin;
  admin.authenticate = [authenticator = context.admin](const grpc::ServerContext& call,
                                                       const std::string& method) {
    return authenticator->Authenticate(call, method);
  };
  admin.audit = [](const resilience::AdminChange& change) {
    server_kit::Log(server_kit::LogLevel::kWarning, "admin_change",
                    {{"service", "resilience.v1.ResilienceAdmin"},
                     {"method", change.method},
                     {"target", change.target},
                     {"before", std::string(resilience::BreakerStateName(change.before))},
                     {"after", std::string(resilience::BreakerStateName(change.after))},
                     {"peer", change.peer},
                     {"identity", change.identity}});
  };
  return std::make_unique<resilience::AdminService>(targets, std::move(admin));
}

}  // namespace

absl::StatusOr<SynchronousDeathWorkflow*> SetUpProducer(ProducerContext& context) {
  server_kit::ServiceContext& service = context.service;
  ASSIGN_OR_RETURN(resilience::Policy policy, PolicyFromFlags());
  auto* runtime = service.Keep(std::make_unique<SyncRuntime>());
  runtime->targets = std::make_unique<resilience::TargetRegistry>(
      std::move(policy), context.environment, service.server.metrics());
  service.server.AddCollectable(runtime->targets->call_metrics());
  // Each address may name several replicas (ipv4:a,b,c or dns:///name: EndpointSet).
  absl::StatusOr<std::unique_ptr<resilience::EndpointSet>> morgue = resilience::EndpointSet::Create(
      runtime->targets->GetTarget(kMorgueTarget), absl::GetFlag(FLAGS_morgue_address),
      service.channel_credentials);
  if (!morgue.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--morgue_address: ", morgue.status().message()));
  }
  absl::StatusOr<std::unique_ptr<resilience::EndpointSet>> appointments =
      resilience::EndpointSet::Create(runtime->targets->GetTarget(kAppointmentsTarget),
                                      absl::GetFlag(FLAGS_appointments_address),
                                      service.channel_credentials);
  if (!appointments.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--appointments_address: ", appointments.status().message()));
  }
  runtime->downstreams = std::make_unique<GrpcDownstreams>(
      *std::move(morgue), *std::move(appointments), *runtime->targets);
  SynchronousDeathWorkflowOptions options;
  options.reconcile_interval = context.background_interval;
  options.owner = service.replica_name;
  runtime->workflow = std::make_unique<SynchronousDeathWorkflow>(
      context.repository, *runtime->downstreams, context.environment, service.server.metrics(),
      options);
  if (absl::GetFlag(FLAGS_resilience_admin)) {
    runtime->admin = MakeAdminService(service, *runtime->targets);
    service.server.RegisterAdminService(runtime->admin.get());
  }
  runtime->workflow->StartBackground();
  service.on_shutdown.push_back([runtime] { runtime->workflow->Stop(); });
  return runtime->workflow.get();
}

}  // namespace integration::sync
