// Creating the JetStream stream and durable consumers the death workflow needs, from flags, and
// saying clearly when one that already exists was configured differently.
//
// Each service ensures what it uses when it (re)connects: patients the stream, morgue and
// appointments the stream and their own consumer. Nothing existing is changed: an operator may
// have tuned it on purpose (more replicas, a longer duplicate window), so a difference is
// reported (returned, logged by the caller and counted) and the existing configuration is used.
#ifndef HOSPITAL_SRC_MESSAGING_JETSTREAM_SETUP_H_
#define HOSPITAL_SRC_MESSAGING_JETSTREAM_SETUP_H_

#include <string>
#include <vector>

#include <nats/nats.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace messaging {

struct StreamSettings {
  std::string name = "HOSPITAL_PATIENT_EVENTS";
  std::vector<std::string> subjects = {"hospital.patients.v1.>"};
  // 1 on a single server; 3 in a three-node cluster (a message is acknowledged once a
  // majority stored it).
  int replicas = 1;
  // Nats-Msg-Id deduplication window: a republished event within it is dropped by the broker.
  absl::Duration duplicate_window = absl::Minutes(2);
  // Events older than this are discarded; consumers that fall further behind lose events
  // (the outbox keeps nothing once published), so this bounds how long a consumer may be down.
  absl::Duration max_age = absl::Hours(24 * 7);
};

struct ConsumerSettings {
  // Durable name, also the consumer's identity at the broker: "morgue", "appointments".
  std::string durable;
  std::string filter_subject = "hospital.patients.v1.patient_died";
  // An unacknowledged delivery is redelivered after this. It bounds how long the events a
  // crashed consumer had fetched wait before another delivery (the catch-up after a consumer
  // restart); a batch handled for longer than this is delivered again meanwhile, and the
  // repeat is absorbed as a duplicate. A batch normally takes one commit (milliseconds).
  absl::Duration ack_wait = absl::Seconds(3);
  // Deliveries before the broker stops redelivering; the consumer itself rejects an event
  // (records it and terminates it) before this when its failure is permanent, so this only
  // bounds a transient failure that never ends. -1: unlimited.
  int64_t max_deliver = -1;
  // Unacknowledged messages in flight at once.
  int64_t max_ack_pending = 1024;
};

// Creates the stream unless it exists. Returns "" when it exists with `settings`, else a
// description of each difference (the existing stream is kept). UNAVAILABLE or
// DEADLINE_EXCEEDED when the broker cannot be asked.
absl::StatusOr<std::string> EnsureStream(jsCtx* jetstream, const StreamSettings& settings);
// The same for a durable pull consumer with explicit acks on `stream`.
absl::StatusOr<std::string> EnsureConsumer(jsCtx* jetstream, const std::string& stream,
                                           const ConsumerSettings& settings);

}  // namespace messaging

#endif  // HOSPITAL_SRC_MESSAGING_JETSTREAM_SETUP_H_
