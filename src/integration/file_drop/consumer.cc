#include "integration/file_drop/consumer.h"

#include <memory>

#include "base/status.h"
#include "integration/file_drop/file_drop.h"
#include "integration/file_drop/settings.h"

namespace integration::file_drop {

absl::Status SetUpConsumer(ConsumerContext& context) {
  ASSIGN_OR_RETURN(const FileDropSettings settings, FileDropSettingsFromFlags());
  server_kit::ServiceContext& service = context.service;
  auto* consumer = service.Keep(std::make_unique<FileDropConsumer>(
      context.inbox, service.server.metrics(),
      FileDropConsumerOptions{settings.directory, context.durable, settings.interval,
                              service.faults, context.fault_method}));
  consumer->Start();
  service.on_shutdown.push_back([consumer] { consumer->Stop(); });
  return absl::OkStatus();
}

}  // namespace integration::file_drop
