// The flags every service shares for the asynchronous death workflow, and what they configure.
//   --death_workflow          sync | async | shared_db_batch | direct_db_write | file_drop
//   --file_drop_dir, --file_drop_interval, --file_drop_consumers          file_drop
//   --nats_url                NATS server(s), comma-separated
//   --nats_stream             the stream's name
//   --nats_stream_replicas    1 on one server, 3 in a three-node cluster
//   --nats_duplicate_window   Nats-Msg-Id deduplication window
//   --nats_stream_max_age     how long the stream keeps events
//   --nats_ack_wait, --nats_max_ack_pending, --nats_fetch_batch    consumers
#ifndef HOSPITAL_SRC_MESSAGING_FLAGS_H_
#define HOSPITAL_SRC_MESSAGING_FLAGS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "messaging/jetstream_setup.h"
#include "messaging/nats_client.h"

namespace messaging {

// kSharedDbBatch: the patients service records a death in its own database only, and a separate
// batch job (src/batch_sync) copies it into the morgue's and appointments' databases.
// kDirectDbWrite: the patients service writes the death into those databases itself, right
// after its own commit.
// kFileDrop: the patients service writes its outbox events as files into a shared directory,
// which the morgue and the appointments service poll (file_drop.h).
enum class DeathWorkflowMode { kSync, kAsync, kSharedDbBatch, kDirectDbWrite, kFileDrop };

// --death_workflow; INVALID_ARGUMENT naming the flag for any other value.
absl::StatusOr<DeathWorkflowMode> DeathWorkflowFromFlags();
// --nats_url, with `client_name` for the connection.
NatsClientOptions NatsClientOptionsFromFlags(const std::string& client_name);
// The --nats_stream* flags; INVALID_ARGUMENT naming the flag for a value out of range.
absl::StatusOr<StreamSettings> StreamSettingsFromFlags();
// The consumer flags, for the durable consumer `durable`.
absl::StatusOr<ConsumerSettings> ConsumerSettingsFromFlags(const std::string& durable);
absl::StatusOr<int> FetchBatchFromFlags();

// --file_drop_dir (created if missing), --file_drop_interval, --file_drop_consumers.
struct FileDropSettings {
  std::string directory;
  absl::Duration interval;
  std::vector<std::string> consumers;
};
absl::StatusOr<FileDropSettings> FileDropSettingsFromFlags();

}  // namespace messaging

#endif  // HOSPITAL_SRC_MESSAGING_FLAGS_H_
