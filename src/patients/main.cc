// The patients service binary. `patients --help` lists the flags.
#include <memory>
#include <optional>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "appointments/patient_died_handler.h"
#include "base/status.h"
#include "batch_sync/batch_sync.h"
#include "hospital/patients/v1/patients.grpc.pb.h"
#include "messaging/file_drop.h"
#include "messaging/flags.h"
#include "messaging/jetstream_publisher.h"
#include "messaging/nats_client.h"
#include "messaging/outbox.h"
#include "messaging/outbox_relay.h"
#include "morgue/patient_died_handler.h"
#include "patients/async_death_workflow.h"
#include "patients/death_workflow.h"
#include "patients/direct_write_death_workflow.h"
#include "patients/downstreams.h"
#include "patients/patients_repository.h"
#include "patients/patients_service.h"
#include "resilience/admin_service.h"
#include "resilience/grpc_call.h"
#include "resilience/policy.h"
#include "resilience/v1/admin.grpc.pb.h"
#include "server_kit/admin_auth.h"
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
ABSL_FLAG(absl::Duration, outbox_publish_timeout, absl::Seconds(1),
          "With --death_workflow=async: how long the relay waits for the broker to acknowledge a "
          "batch before it publishes the unacknowledged events again (a repeat the broker "
          "drops within its duplicate window)");
ABSL_FLAG(absl::Duration, outbox_retention, absl::Minutes(5),
          "With --death_workflow=async: how long published events stay in the outbox table "
          "before they are pruned; longer than what the broker can lose (its file store syncs "
          "every 2 minutes), so that --outbox_republish_since can send them again");
ABSL_FLAG(absl::Duration, outbox_republish_since, absl::ZeroDuration(),
          "With --death_workflow=async: at start, publish again every event published within "
          "this long (e.g. 3m after the broker lost power: what it had acknowledged but not yet "
          "synced is sent again; consumers absorb the repeats); 0: none");
ABSL_FLAG(absl::Duration, reconcile_interval, absl::Seconds(1),
          "How often owed undo calls are retried and orphaned deaths resumed");
ABSL_FLAG(std::string, morgue_db, "",
          "With --death_workflow=direct_db_write: the morgue's database, written by this service");
ABSL_FLAG(std::string, appointments_db, "",
          "With --death_workflow=direct_db_write: the appointments service's database, written "
          "by this service");
ABSL_FLAG(absl::Duration, direct_write_busy_timeout, absl::Seconds(1),
          "With --death_workflow=direct_db_write: how long a write waits for a lock the owner "
          "of the other database holds before the death is left to the background pass");
ABSL_FLAG(bool, resilience_admin, true,
          "Serve resilience.v1.ResilienceAdmin on the admin listener (list breakers; force open, "
          "disable and reset them with the admin credentials)");

namespace {

constexpr char kDefaultPolicyJson[] =
    R"({"defaultTarget": {"methodConfig": [{"name": [{}], "deadlineMargin": "0.1s"}]}})";

// Everything the patients service owns beyond its database, torn down in reverse order.
struct PatientsRuntime {
  base::RealEnvironment environment;
  std::unique_ptr<resilience::TargetRegistry> targets;
  std::unique_ptr<patients::GrpcDownstreams> downstreams;
  std::unique_ptr<patients::PatientsRepository> repository;
  // Drives new deaths in sync mode; in both modes, finishes what synchronous deaths left
  // (owed undo calls, pending workflows), so that switching to async strands nothing.
  std::unique_ptr<patients::SynchronousDeathWorkflow> workflow;
  // Async mode only.
  std::unique_ptr<messaging::NatsClient> nats;
  std::unique_ptr<messaging::JetStreamPublisher> publisher;
  std::unique_ptr<messaging::OutboxStore> outbox;
  std::unique_ptr<messaging::OutboxRelay> relay;
  std::unique_ptr<patients::AsynchronousDeathWorkflow> async_workflow;
  // File drops only (with outbox and relay above).
  std::unique_ptr<messaging::FileDropPublisher> file_publisher;
  std::optional<base::PeriodicThread> file_cleanup;
  // Direct database writes only.
  std::unique_ptr<server_kit::Database> morgue_db;
  std::unique_ptr<server_kit::Database> appointments_db;
  morgue::PatientDiedHandler morgue_handler;
  appointments::PatientDiedHandler appointments_handler;
  std::unique_ptr<batch_sync::BatchSync> copy;
  std::unique_ptr<patients::DirectWriteDeathWorkflow> direct_workflow;
  std::unique_ptr<patients::PatientsService> service;
  std::unique_ptr<resilience::AdminService> admin;
};

absl::Status Setup(server_kit::ServiceContext& context) {
  ASSIGN_OR_RETURN(const messaging::DeathWorkflowMode mode, messaging::DeathWorkflowFromFlags());
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
      resilience::CreateChannel(absl::GetFlag(FLAGS_morgue_address), context.channel_credentials),
      resilience::CreateChannel(absl::GetFlag(FLAGS_appointments_address),
                                context.channel_credentials),
      *runtime->targets);
  runtime->repository = std::make_unique<patients::PatientsRepository>(context.database);
  patients::SynchronousDeathWorkflowOptions options;
  options.reconcile_interval = absl::GetFlag(FLAGS_reconcile_interval);
  runtime->workflow = std::make_unique<patients::SynchronousDeathWorkflow>(
      *runtime->repository, *runtime->downstreams, runtime->environment.environment(),
      context.server.metrics(), options);
  patients::DeathWorkflow* death_workflow = runtime->workflow.get();
  if (mode == messaging::DeathWorkflowMode::kAsync) {
    ASSIGN_OR_RETURN(messaging::StreamSettings stream, messaging::StreamSettingsFromFlags());
    ASSIGN_OR_RETURN(runtime->nats, messaging::NatsClient::Create(
                                        messaging::NatsClientOptionsFromFlags("patients"),
                                        context.server.metrics()));
    ASSIGN_OR_RETURN(runtime->publisher, messaging::JetStreamPublisher::Create(
                                             *runtime->nats, std::move(stream),
                                             absl::GetFlag(FLAGS_outbox_publish_timeout)));
    runtime->outbox = std::make_unique<messaging::OutboxStore>(context.database);
    if (const absl::Duration since = absl::GetFlag(FLAGS_outbox_republish_since);
        since > absl::ZeroDuration()) {
      ASSIGN_OR_RETURN(const int marked,
                       runtime->outbox->MarkUnpublishedSince(absl::Now() - since));
      server_kit::Log(server_kit::LogLevel::kWarning, "outbox_republish",
                      {{"since", absl::FormatDuration(since)}, {"events", std::to_string(marked)}});
    }
    messaging::OutboxRelayOptions relay_options;
    relay_options.retention = absl::GetFlag(FLAGS_outbox_retention);
    runtime->relay = std::make_unique<messaging::OutboxRelay>(
        *runtime->outbox, *runtime->publisher, base::SystemClock(), context.server.metrics(),
        relay_options);
    messaging::OutboxRelay* relay = runtime->relay.get();
    runtime->async_workflow = std::make_unique<patients::AsynchronousDeathWorkflow>(
        *runtime->repository, base::SystemClock(), context.server.metrics(),
        [relay] { relay->Notify(); });
    death_workflow = runtime->async_workflow.get();
  } else if (mode == messaging::DeathWorkflowMode::kFileDrop) {
    // The outbox relay writes a file of the events committed since its last pass, every
    // interval (it is not woken per death: the pattern's files are batches).
    ASSIGN_OR_RETURN(const messaging::FileDropSettings settings,
                     messaging::FileDropSettingsFromFlags());
    runtime->file_publisher =
        std::make_unique<messaging::FileDropPublisher>(settings.directory, base::SystemClock());
    ASSIGN_OR_RETURN(const int unfinished,
                     messaging::RemoveUnfinishedEventFiles(settings.directory));
    if (unfinished > 0) {
      server_kit::Log(server_kit::LogLevel::kWarning, "file_drop_unfinished_files_removed",
                      {{"files", absl::StrCat(unfinished)}});
    }
    runtime->outbox = std::make_unique<messaging::OutboxStore>(context.database);
    messaging::OutboxRelayOptions relay_options;
    relay_options.idle_poll = settings.interval;
    relay_options.retention = absl::GetFlag(FLAGS_outbox_retention);
    runtime->relay = std::make_unique<messaging::OutboxRelay>(
        *runtime->outbox, *runtime->file_publisher, base::SystemClock(), context.server.metrics(),
        relay_options);
    runtime->async_workflow = std::make_unique<patients::AsynchronousDeathWorkflow>(
        *runtime->repository, base::SystemClock(), context.server.metrics(), [] {});
    death_workflow = runtime->async_workflow.get();
    runtime->file_cleanup.emplace(settings.interval, [settings] {
      if (absl::StatusOr<int> removed =
              messaging::RemoveConsumedFiles(settings.directory, settings.consumers);
          !removed.ok()) {
        server_kit::Log(server_kit::LogLevel::kWarning, "file_drop_cleanup_failed",
                        {{"error", removed.status().ToString()}});
      }
    });
  } else if (mode == messaging::DeathWorkflowMode::kDirectDbWrite) {
    constexpr char kRequired[] = "required with --death_workflow=direct_db_write";
    server_kit::DatabaseOptions target_options;
    target_options.busy_timeout = absl::GetFlag(FLAGS_direct_write_busy_timeout);
    ASSIGN_OR_RETURN(runtime->morgue_db,
                     batch_sync::OpenServiceDatabase("morgue_db", absl::GetFlag(FLAGS_morgue_db),
                                                     kRequired, target_options));
    ASSIGN_OR_RETURN(
        runtime->appointments_db,
        batch_sync::OpenServiceDatabase("appointments_db", absl::GetFlag(FLAGS_appointments_db),
                                        kRequired, target_options));
    runtime->copy = std::make_unique<batch_sync::BatchSync>(
        context.database, context.database,
        std::vector<batch_sync::SyncTarget>{
            {"morgue", runtime->morgue_db.get(), &runtime->morgue_handler},
            {"appointments", runtime->appointments_db.get(), &runtime->appointments_handler}},
        base::SystemClock(), context.server.metrics(), /*batch_size=*/500);
    runtime->direct_workflow = std::make_unique<patients::DirectWriteDeathWorkflow>(
        *runtime->repository, *runtime->copy, base::SystemClock(), context.server.metrics());
    death_workflow = runtime->direct_workflow.get();
  } else if (mode == messaging::DeathWorkflowMode::kSharedDbBatch) {
    // The death is recorded here only; batch_sync reads it from this database.
    runtime->async_workflow = std::make_unique<patients::AsynchronousDeathWorkflow>(
        *runtime->repository, base::SystemClock(), context.server.metrics(), [] {},
        patients::DeathDelivery::kSharedDatabase);
    death_workflow = runtime->async_workflow.get();
  }
  runtime->service = std::make_unique<patients::PatientsService>(
      *runtime->repository, *death_workflow, base::SystemClock(), context.server.metrics());
  context.server.RegisterService(runtime->service.get(),
                                 hospital::patients::v1::PatientsService::service_full_name());
  if (absl::GetFlag(FLAGS_resilience_admin)) {
    resilience::AdminServiceOptions admin;
    admin.authenticate = [authenticator = context.admin](const grpc::ServerContext& call,
                                                         const std::string& method) {
      return authenticator->Authenticate(call, method);
    };
    // The audit line of every operator change: who, what, before and after.
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
    runtime->admin =
        std::make_unique<resilience::AdminService>(*runtime->targets, std::move(admin));
    context.server.RegisterAdminService(runtime->admin.get());
  }
  runtime->workflow->StartBackground();
  if (runtime->relay) runtime->relay->Start();
  if (runtime->direct_workflow) {
    runtime->direct_workflow->StartBackground(absl::GetFlag(FLAGS_reconcile_interval));
  }
  context.on_shutdown.push_back([runtime] {
    runtime->workflow->Stop();
    if (runtime->relay) runtime->relay->Stop();
    if (runtime->direct_workflow) runtime->direct_workflow->Stop();
    if (runtime->file_cleanup) runtime->file_cleanup->Stop();
  });
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
      "[--appointments_address=localhost:50053] [--resilience_policy=policy.json] "
      "[--death_workflow=sync|async] [--nats_url=nats://127.0.0.1:4222]",
      "0.0.0.0:50051",
      "127.0.0.1:50061",
      "0.0.0.0:9091",
      "patients.db",
      patients::Migrations(),
  };
  return server_kit::ServiceMain(argc, argv, definition, Setup);
}
