// EventPublisher over JetStream: asynchronous publishes, pipelined, each with Nats-Msg-Id = event
// id (the broker drops a repeat within the stream's duplicate window) and the expected stream,
// then one wait for all acknowledgements.
//
// A batch's events are all sent before any acknowledgement is awaited, so a batch costs about
// one round trip and one broker write, not one per event. Before its first publish, and again
// after a failure, it ensures the stream exists (jetstream_setup.h): a broker that lost its
// store gets the stream back.
//
// Used by one thread at a time (the relay's).
#ifndef HOSPITAL_SRC_MESSAGING_JETSTREAM_PUBLISHER_H_
#define HOSPITAL_SRC_MESSAGING_JETSTREAM_PUBLISHER_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nats/nats.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/sync.h"
#include "messaging/jetstream_setup.h"
#include "messaging/nats_client.h"
#include "messaging/outbox_relay.h"

namespace messaging {

class JetStreamPublisher final : public EventPublisher {
 public:
  // `client` must outlive this object.
  static absl::StatusOr<std::unique_ptr<JetStreamPublisher>> Create(NatsClient& client,
                                                                    StreamSettings stream,
                                                                    absl::Duration ack_timeout);
  ~JetStreamPublisher() override;

  std::vector<absl::Status> Publish(const std::vector<PendingEvent>& events) override;

 private:
  JetStreamPublisher(NatsClient& client, StreamSettings stream, absl::Duration ack_timeout)
      : client_(client), stream_(std::move(stream)), ack_timeout_(ack_timeout) {}
  static void OnAck(jsCtx* context, natsMsg* message, jsPubAck* ack, jsPubAckErr* error,
                    void* closure);
  absl::Status EnsureStreamOnce();

  NatsClient& client_;
  const StreamSettings stream_;
  const absl::Duration ack_timeout_;
  jsCtx* publishing_ = nullptr;
  bool stream_ensured_ = false;

  base::Mutex mutex_;
  // The batch in flight: event id -> index in `results_`. Acks arrive on libnats's thread.
  std::map<std::string, std::size_t> in_flight_ ABSL_GUARDED_BY(mutex_);
  std::vector<absl::Status> results_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace messaging

#endif  // HOSPITAL_SRC_MESSAGING_JETSTREAM_PUBLISHER_H_
