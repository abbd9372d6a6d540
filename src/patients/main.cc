// The patients service binary. `patients --help` lists the flags.
#include <memory>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "hospital/patients/v1/patients.grpc.pb.h"
#include "patients/death_workflow.h"
#include "patients/downstreams.h"
#include "patients/patients_repository.h"
#include "patients/patients_service.h"
#include "resilience/admin_service.h"
#include "resilience/grpc_call.h"
#include "resilience/policy.h"
#include "resilience/v1/admin.grpc.pb.h"
#include "server_kit/log.h"
#include "server_kit/service_main.h"

ABSL_FLAG(std::string, morgue_address, "localhost:50052", "The morgue service, host:port");
ABSL_FLAG(std::string, appointments_address, "localhost:50053",
          "The appointments service, host:port");
ABSL_FLAG(std::string, resilience_policy, "",
          "JSON resilience policy for calls to morgue and appointments (see "
          "protos/resilience/v1/example_policy.json); empty: the library's defaults (a 30s "
          "timeout, no retries, a circuit breaker per service that opens for 5s when half of at "
          "least 20 of the last 100 calls failed, no bulkhead) with a 100ms deadline margin");
ABSL_FLAG(std::string, death_workflow, "sync",
          "How RecordDeath reaches morgue and appointments: sync (gRPC calls with saga "
          "compensation)");
ABSL_FLAG(absl::Duration, reconcile_interval, absl::Seconds(1),
          "How often owed undo calls are retried and orphaned deaths resumed");
ABSL_FLAG(bool, resilience_admin, true,
          "Serve resilience.v1.ResilienceAdmin (list, force open, disable, reset breakers)");

namespace {

constexpr char kDefaultPolicyJson[] =
    R"({"defaultTarget": {"methodConfig": [{"name": [{}], "deadlineMargin": "0.1s"}]}})";

// Everything the patients service owns beyond its database, torn down in reverse order.
struct PatientsRuntime {
  base::RealEnvironment environment;
  std::unique_ptr<resilience::TargetRegistry> targets;
  std::unique_ptr<patients::GrpcDownstreams> downstreams;
  std::unique_ptr<patients::PatientsRepository> repository;
  std::unique_ptr<patients::SynchronousDeathWorkflow> workflow;
  std::unique_ptr<patients::PatientsService> service;
  std::unique_ptr<resilience::AdminService> admin;
};

absl::Status Setup(server_kit::ServiceContext& context) {
  if (absl::GetFlag(FLAGS_death_workflow) != "sync") {
    return absl::InvalidArgumentError(absl::StrCat("--death_workflow: must be sync, got \"",
                                                   absl::GetFlag(FLAGS_death_workflow), "\""));
  }
  // Without a policy, calls still end kDefaultDeadlineMargin before the caller's deadline, so
  // that the caller hears UNAVAILABLE naming the service that was too slow, not a bare
  // DEADLINE_EXCEEDED of its own.
  resilience::Policy policy = *resilience::ParsePolicyJson(kDefaultPolicyJson);
  const std::string policy_path = absl::GetFlag(FLAGS_resilience_policy);
  if (!policy_path.empty()) {
    absl::StatusOr<resilience::Policy> loaded = resilience::LoadPolicyFile(policy_path);
    if (!loaded.ok()) {
      return absl::Status(loaded.status().code(),
                          absl::StrCat("--resilience_policy: ", loaded.status().message()));
    }
    policy = *std::move(loaded);
  } else {
    server_kit::Log(server_kit::LogLevel::kWarning, "no_resilience_policy",
                    {{"hint", "pass --resilience_policy; using the library's defaults"}});
  }
  auto* runtime = context.Keep(std::make_unique<PatientsRuntime>());
  runtime->targets = std::make_unique<resilience::TargetRegistry>(
      std::move(policy), runtime->environment.environment(), context.server.metrics());
  context.server.AddCollectable(runtime->targets->call_metrics());
  runtime->downstreams = std::make_unique<patients::GrpcDownstreams>(
      resilience::CreateChannel(absl::GetFlag(FLAGS_morgue_address)),
      resilience::CreateChannel(absl::GetFlag(FLAGS_appointments_address)), *runtime->targets);
  runtime->repository = std::make_unique<patients::PatientsRepository>(context.database);
  patients::SynchronousDeathWorkflowOptions options;
  options.reconcile_interval = absl::GetFlag(FLAGS_reconcile_interval);
  runtime->workflow = std::make_unique<patients::SynchronousDeathWorkflow>(
      *runtime->repository, *runtime->downstreams, runtime->environment.environment(),
      context.server.metrics(), options);
  runtime->service = std::make_unique<patients::PatientsService>(
      *runtime->repository, *runtime->workflow, base::SystemClock(), context.server.metrics());
  context.server.RegisterService(runtime->service.get(),
                                 hospital::patients::v1::PatientsService::service_full_name());
  if (absl::GetFlag(FLAGS_resilience_admin)) {
    runtime->admin = std::make_unique<resilience::AdminService>(*runtime->targets);
    context.server.RegisterService(runtime->admin.get(),
                                   resilience::v1::ResilienceAdmin::service_full_name());
  }
  runtime->workflow->StartBackground();
  context.on_shutdown.push_back([runtime] { runtime->workflow->Stop(); });
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  const server_kit::ServiceDefinition definition{
      "patients",
      "The patients service: patients, their records, and the recording of deaths, which "
      "reaches the morgue and appointments services.\n"
      "Usage: patients [--listen=0.0.0.0:50051] [--metrics_listen=0.0.0.0:9091] "
      "[--db=patients.db] [--morgue_address=localhost:50052] "
      "[--appointments_address=localhost:50053] [--resilience_policy=policy.json]",
      "0.0.0.0:50051",
      "0.0.0.0:9091",
      "patients.db",
      patients::Migrations(),
  };
  return server_kit::ServiceMain(argc, argv, definition, Setup);
}
