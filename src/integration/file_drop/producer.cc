#include "integration/file_drop/producer.h"

#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "base/periodic_thread.h"
#include "base/status.h"
#include "integration/file_drop/file_drop.h"
#include "integration/file_drop/settings.h"
#include "integration/local_death_workflow.h"
#include "integration/outbox_flags.h"
#include "messaging/outbox.h"
#include "messaging/outbox_relay.h"
#include "server_kit/log.h"

namespace integration::file_drop {
namespace {

// What the module owns, torn down in reverse order.
struct FileDropRuntime {
  std::unique_ptr<FileDropPublisher> publisher;
  std::unique_ptr<messaging::OutboxStore> outbox;
  std::unique_ptr<messaging::OutboxRelay> relay;
  std::unique_ptr<LocalDeathWorkflow> workflow;
  std::optional<base::PeriodicThread> cleanup;
};

}  // namespace

absl::StatusOr<patients::DeathWorkflow*> SetUpProducer(ProducerContext& context) {
  server_kit::ServiceContext& service = context.service;
  ASSIGN_OR_RETURN(const FileDropSettings settings, FileDropSettingsFromFlags());
  auto* runtime = service.Keep(std::make_unique<FileDropRuntime>());
  runtime->publisher = std::make_unique<FileDropPublisher>(settings.directory, base::SystemClock());
  ASSIGN_OR_RETURN(const int unfinished, RemoveUnfinishedEventFiles(settings.directory));
  if (unfinished > 0) {
    server_kit::Log(server_kit::LogLevel::kWarning, "file_drop_unfinished_files_removed",
                    {{"files", absl::StrCat(unfinished)}});
  }
  runtime->outbox = std::make_unique<messaging::OutboxStore>(service.database);
  messaging::OutboxRelayOptions relay_options = OutboxRelayOptionsFromFlags();
  relay_options.idle_poll = settings.interval;
  runtime->relay = std::make_unique<messaging::OutboxRelay>(
      *runtime->outbox, *runtime->publisher, base::SystemClock(), service.server.metrics(),
      relay_options);
  runtime->workflow = std::make_unique<LocalDeathWorkflow>(
      context.repository, base::SystemClock(), service.server.metrics(), DeathDelivery::kOutbox);
  runtime->relay->Start();
  runtime->cleanup.emplace(settings.interval, [settings] {
    if (absl::StatusOr<int> removed = RemoveConsumedFiles(settings.directory, settings.consumers);
        !removed.ok()) {
      server_kit::Log(server_kit::LogLevel::kWarning, "file_drop_cleanup_failed",
                      {{"error", removed.status().ToString()}});
    }
  });
  service.on_shutdown.push_back([runtime] {
    runtime->relay->Stop();
    runtime->cleanup->Stop();
  });
  return runtime->workflow.get();
}

}  // namespace integration::file_drop
