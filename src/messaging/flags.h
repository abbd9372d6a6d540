// The NATS flags every service shares (for --death_workflow=async), and what they configure.
//   --nats_url                NATS server(s), comma-separated
//   --nats_stream             the stream's name
//   --nats_stream_replicas    1 on one server, 3 in a three-node cluster
//   --nats_duplicate_window   Nats-Msg-Id deduplication window
//   --nats_stream_max_age     how long the stream keeps events
//   --nats_ack_wait, --nats_max_ack_pending, --nats_fetch_batch    consumers
#ifndef HOSPITAL_SRC_MESSAGING_FLAGS_H_
#define HOSPITAL_SRC_MESSAGING_FLAGS_H_

#include <string>

#include "absl/status/statusor.h"
#include "messaging/jetstream_setup.h"
#include "messaging/nats_client.h"

namespace messaging {

// --nats_url, with `client_name` for the connection.
NatsClientOptions NatsClientOptionsFromFlags(const std::string& client_name);
// The --nats_stream* flags; INVALID_ARGUMENT naming the flag for a value out of range.
absl::StatusOr<StreamSettings> StreamSettingsFromFlags();
// The consumer flags, for the durable consumer `durable`.
absl::StatusOr<ConsumerSettings> ConsumerSettingsFromFlags(const std::string& durable);
absl::StatusOr<int> FetchBatchFromFlags();

}  // namespace messaging

#endif  // HOSPITAL_SRC_MESSAGING_FLAGS_H_
