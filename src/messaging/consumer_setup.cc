#include "messaging/consumer_setup.h"

#include <memory>

#include "base/status.h"
#include "hospital/messaging/v1/inbox.grpc.pb.h"
#include "messaging/file_drop.h"
#include "messaging/flags.h"
#include "messaging/inbox_service.h"
#include "messaging/jetstream_consumer.h"
#include "messaging/nats_client.h"

namespace messaging {
namespace {

// Torn down in reverse order: the consumer before the connection it uses.
struct ConsumerRuntime {
  std::unique_ptr<NatsClient> nats;
  std::unique_ptr<JetStreamConsumer> consumer;
};

}  // namespace

absl::Status SetUpEventConsumer(server_kit::ServiceContext& context, const std::string& durable,
                                EventHandler& handler, const std::string& fault_method) {
  ASSIGN_OR_RETURN(const DeathWorkflowMode mode, DeathWorkflowFromFlags());
  Inbox* inbox =
      context.Keep(std::make_unique<Inbox>(context.database, handler, base::SystemClock()));
  InboxService* service = context.Keep(std::make_unique<InboxService>(*inbox));
  context.server.RegisterService(service, hospital::messaging::v1::EventInbox::service_full_name());
  if (mode == DeathWorkflowMode::kFileDrop) {
    ASSIGN_OR_RETURN(const FileDropSettings settings, FileDropSettingsFromFlags());
    auto* consumer = context.Keep(std::make_unique<FileDropConsumer>(
        *inbox, context.server.metrics(),
        FileDropConsumerOptions{settings.directory, durable, settings.interval, context.faults,
                                fault_method}));
    consumer->Start();
    context.on_shutdown.push_back([consumer] { consumer->Stop(); });
    return absl::OkStatus();
  }
  if (mode != DeathWorkflowMode::kAsync) return absl::OkStatus();

  JetStreamConsumerOptions options;
  ASSIGN_OR_RETURN(options.stream, StreamSettingsFromFlags());
  ASSIGN_OR_RETURN(options.consumer, ConsumerSettingsFromFlags(durable));
  ASSIGN_OR_RETURN(options.batch_size, FetchBatchFromFlags());
  options.fault_method = fault_method;
  auto* runtime = context.Keep(std::make_unique<ConsumerRuntime>());
  ASSIGN_OR_RETURN(runtime->nats, NatsClient::Create(NatsClientOptionsFromFlags(durable),
                                                     context.server.metrics()));
  runtime->consumer = std::make_unique<JetStreamConsumer>(
      *runtime->nats, *inbox, context.faults, context.server.metrics(), std::move(options));
  JetStreamConsumer* consumer = runtime->consumer.get();
  consumer->Start();
  context.on_shutdown.push_back([consumer] { consumer->Stop(); });
  return absl::OkStatus();
}

}  // namespace messaging
