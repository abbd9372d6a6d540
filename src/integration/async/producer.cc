#include "integration/async/producer.h"

#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "base/status.h"
#include "integration/local_death_workflow.h"
#include "integration/outbox_flags.h"
#include "messaging/flags.h"
#include "messaging/jetstream_publisher.h"
#include "messaging/nats_client.h"
#include "messaging/outbox.h"
#include "messaging/outbox_relay.h"
#include "server_kit/log.h"

ABSL_FLAG(absl::Duration, outbox_publish_timeout, absl::Seconds(1),
          "With --death_workflow=async: how long the relay waits for the broker to acknowledge a "
          "batch before it publishes the unacknowledged events again (a repeat the broker "
          "drops within its duplicate window)");
ABSL_FLAG(absl::Duration, outbox_republish_since, absl::ZeroDuration(),
          "With --death_workflow=async: at start, publish again every event published within "
          "this long (e.g. 3m after the broker lost power: what it had acknowledged but not yet "
          "synced is sent again; consumers absorb the repeats); 0: none");

namespace integration::async {
namespace {

// What the module owns, torn down in reverse order: the relay before the publisher and the
// connection it uses.
struct AsyncRuntime {
  std::unique_ptr<messaging::NatsClient> nats;
  std::unique_ptr<messaging::JetStreamPublisher> publisher;
  std::unique_ptr<messaging::OutboxStore> outbox;
  std::unique_ptr<messaging::OutboxRelay> relay;
  std::unique_ptr<LocalDeathWorkflow> workflow;
};

}  // namespace

absl::StatusOr<patients::DeathWorkflow*> SetUpProducer(ProducerContext& context) {
  server_kit::ServiceContext& service = context.service;
  ASSIGN_OR_RETURN(messaging::StreamSettings stream, messaging::StreamSettingsFromFlags());
  auto* runtime = service.Keep(std::make_unique<AsyncRuntime>());
  ASSIGN_OR_RETURN(runtime->nats,
                   messaging::NatsClient::Create(messaging::NatsClientOptionsFromFlags("patients"),
                                                 service.server.metrics()));
  ASSIGN_OR_RETURN(runtime->publisher, messaging::JetStreamPublisher::Create(
                                           *runtime->nats, std::move(stream),
                                           absl::GetFlag(FLAGS_outbox_publish_timeout)));
  runtime->outbox = std::make_unique<messaging::OutboxStore>(service.database);
  if (const absl::Duration since = absl::GetFlag(FLAGS_outbox_republish_since);
      since > absl::ZeroDuration()) {
    ASSIGN_OR_RETURN(const int marked, runtime->outbox->MarkUnpublishedSince(absl::Now() - since));
    server_kit::Log(server_kit::LogLevel::kWarning, "outbox_republish",
                    {{"since", absl::FormatDuration(since)}, {"events", std::to_string(marked)}});
  }
  runtime->relay = std::make_unique<messaging::OutboxRelay>(
      *runtime->outbox, *runtime->publisher, base::SystemClock(), service.server.metrics(),
      OutboxRelayOptionsFromFlags());
  messaging::OutboxRelay* relay = runtime->relay.get();
  runtime->workflow = std::make_unique<LocalDeathWorkflow>(
      context.repository, base::SystemClock(), service.server.metrics(), DeathDelivery::kOutbox,
      [relay] { relay->Notify(); });
  relay->Start();
  service.on_shutdown.push_back([relay] { relay->Stop(); });
  return runtime->workflow.get();
}

}  // namespace integration::async
