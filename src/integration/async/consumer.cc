#include "integration/async/consumer.h"

#include <memory>

#include "base/status.h"
#include "messaging/flags.h"
#include "messaging/jetstream_consumer.h"
#include "messaging/nats_client.h"

namespace integration::async {
namespace {

// Torn down in reverse order: the consumer before the connection it uses.
struct ConsumerRuntime {
  std::unique_ptr<messaging::NatsClient> nats;
  std::unique_ptr<messaging::JetStreamConsumer> consumer;
};

}  // namespace

absl::Status SetUpConsumer(ConsumerContext& context) {
  server_kit::ServiceContext& service = context.service;
  messaging::JetStreamConsumerOptions options;
  ASSIGN_OR_RETURN(options.stream, messaging::StreamSettingsFromFlags());
  ASSIGN_OR_RETURN(options.consumer, messaging::ConsumerSettingsFromFlags(context.durable));
  ASSIGN_OR_RETURN(options.batch_size, messaging::FetchBatchFromFlags());
  options.fault_method = context.fault_method;
  auto* runtime = service.Keep(std::make_unique<ConsumerRuntime>());
  ASSIGN_OR_RETURN(runtime->nats, messaging::NatsClient::Create(
                                      messaging::NatsClientOptionsFromFlags(context.durable),
                                      service.server.metrics()));
  runtime->consumer = std::make_unique<messaging::JetStreamConsumer>(
      *runtime->nats, context.inbox, service.faults, service.server.metrics(), std::move(options));
  messaging::JetStreamConsumer* consumer = runtime->consumer.get();
  consumer->Start();
  service.on_shutdown.push_back([consumer] { consumer->Stop(); });
  return absl::OkStatus();
}

}  // namespace integration::async
