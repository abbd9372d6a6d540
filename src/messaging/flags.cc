#include "messaging/flags.h"

#include <filesystem>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"

ABSL_FLAG(std::string, death_workflow, "sync",
          "How a recorded death reaches morgue and appointments: sync (patients calls both over "
          "gRPC and undoes its work if either fails), async (patients commits the death with an "
          "event in its outbox and publishes it to NATS JetStream; morgue and appointments "
          "consume it), shared_db_batch (patients records the death only; the batch_sync job "
          "copies it into the other two databases), direct_db_write (patients writes it into "
          "the other two databases itself) or file_drop (patients writes events as files into "
          "--file_drop_dir, which the other two poll). Give all three services the same value.");
ABSL_FLAG(std::string, file_drop_dir, "",
          "With --death_workflow=file_drop: the directory the three services share (created if "
          "missing)");
ABSL_FLAG(absl::Duration, file_drop_interval, absl::Seconds(1),
          "With --death_workflow=file_drop: how often files are written (patients) and read "
          "(morgue, appointments)");
ABSL_FLAG(std::vector<std::string>, file_drop_consumers,
          std::vector<std::string>({"morgue", "appointments"}),
          "With --death_workflow=file_drop (patients): the consumers whose done markers a file "
          "waits for before it is deleted");
ABSL_FLAG(std::string, nats_url, "nats://127.0.0.1:4222",
          "NATS server URL(s), comma-separated (used with --death_workflow=async)");
ABSL_FLAG(std::string, nats_tls_ca, "",
          "PEM CA that signs the NATS servers' certificates; turns TLS to the broker on");
ABSL_FLAG(std::string, nats_tls_cert, "",
          "PEM certificate this service presents to NATS (for a server that verifies clients)");
ABSL_FLAG(std::string, nats_tls_key, "", "PEM private key of --nats_tls_cert");
ABSL_FLAG(std::string, nats_tls_server_name, "",
          "Name the NATS servers' certificates must carry (default: the host of the first "
          "--nats_url)");
ABSL_FLAG(std::string, nats_stream, "HOSPITAL_PATIENT_EVENTS",
          "JetStream stream of patient events (created if missing)");
ABSL_FLAG(int, nats_stream_replicas, 1,
          "Replicas of the stream when this service creates it: 1 on a single server, 3 in a "
          "three-node cluster");
ABSL_FLAG(absl::Duration, nats_duplicate_window, absl::Minutes(2),
          "The stream's Nats-Msg-Id deduplication window when this service creates it");
ABSL_FLAG(absl::Duration, nats_stream_max_age, absl::Hours(24 * 7),
          "How long the stream keeps events when this service creates it: a consumer down for "
          "longer misses events");

ABSL_FLAG(absl::Duration, nats_ack_wait, absl::Seconds(3),
          "Consumers: an event not acknowledged within this is delivered again (when this "
          "service creates its consumer)");
ABSL_FLAG(int64_t, nats_max_ack_pending, 1024,
          "Consumers: events delivered and not yet acknowledged, at most (when this service "
          "creates its consumer)");
ABSL_FLAG(int, nats_fetch_batch, 64,
          "Consumers: events fetched and applied in one local transaction");

namespace messaging {

absl::StatusOr<DeathWorkflowMode> DeathWorkflowFromFlags() {
  const std::string mode = absl::GetFlag(FLAGS_death_workflow);
  if (mode == "sync") return DeathWorkflowMode::kSync;
  if (mode == "async") return DeathWorkflowMode::kAsync;
  if (mode == "shared_db_batch") return DeathWorkflowMode::kSharedDbBatch;
  if (mode == "direct_db_write") return DeathWorkflowMode::kDirectDbWrite;
  if (mode == "file_drop") return DeathWorkflowMode::kFileDrop;
  return absl::InvalidArgumentError(absl::StrCat(
      "--death_workflow: must be sync, async, shared_db_batch, direct_db_write or file_drop, "
      "got \"",
      mode, "\""));
}

NatsClientOptions NatsClientOptionsFromFlags(const std::string& client_name) {
  NatsClientOptions options;
  options.url = absl::GetFlag(FLAGS_nats_url);
  options.name = client_name;
  options.tls_ca = absl::GetFlag(FLAGS_nats_tls_ca);
  options.tls_cert = absl::GetFlag(FLAGS_nats_tls_cert);
  options.tls_key = absl::GetFlag(FLAGS_nats_tls_key);
  options.tls_server_name = absl::GetFlag(FLAGS_nats_tls_server_name);
  return options;
}

absl::StatusOr<StreamSettings> StreamSettingsFromFlags() {
  StreamSettings settings;
  settings.name = absl::GetFlag(FLAGS_nats_stream);
  if (settings.name.empty() || settings.name.find_first_of(" \t.*>") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--nats_stream: \"", settings.name, "\" is not a stream name (no spaces, '.', '*', '>')"));
  }
  settings.replicas = absl::GetFlag(FLAGS_nats_stream_replicas);
  if (settings.replicas < 1 || settings.replicas > 5) {
    return absl::InvalidArgumentError(
        absl::StrCat("--nats_stream_replicas: must be 1 to 5, got ", settings.replicas));
  }
  settings.duplicate_window = absl::GetFlag(FLAGS_nats_duplicate_window);
  settings.max_age = absl::GetFlag(FLAGS_nats_stream_max_age);
  if (settings.duplicate_window <= absl::ZeroDuration() ||
      settings.duplicate_window > settings.max_age) {
    return absl::InvalidArgumentError(
        "--nats_duplicate_window: must be positive and at most --nats_stream_max_age");
  }
  return settings;
}

}  // namespace messaging

namespace messaging {

absl::StatusOr<ConsumerSettings> ConsumerSettingsFromFlags(const std::string& durable) {
  ConsumerSettings settings;
  settings.durable = durable;
  settings.ack_wait = absl::GetFlag(FLAGS_nats_ack_wait);
  if (settings.ack_wait < absl::Seconds(1)) {
    return absl::InvalidArgumentError("--nats_ack_wait: must be at least 1s");
  }
  settings.max_ack_pending = absl::GetFlag(FLAGS_nats_max_ack_pending);
  if (settings.max_ack_pending < 1) {
    return absl::InvalidArgumentError("--nats_max_ack_pending: must be at least 1");
  }
  return settings;
}

absl::StatusOr<int> FetchBatchFromFlags() {
  const int batch = absl::GetFlag(FLAGS_nats_fetch_batch);
  if (batch < 1 || batch > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("--nats_fetch_batch: must be 1 to 1024, got ", batch));
  }
  return batch;
}

absl::StatusOr<FileDropSettings> FileDropSettingsFromFlags() {
  FileDropSettings settings;
  settings.directory = absl::GetFlag(FLAGS_file_drop_dir);
  if (settings.directory.empty()) {
    return absl::InvalidArgumentError("--file_drop_dir: required with --death_workflow=file_drop");
  }
  std::error_code error;
  std::filesystem::create_directories(settings.directory, error);
  if (error) {
    return absl::InvalidArgumentError(absl::StrCat("--file_drop_dir: cannot create \"",
                                                   settings.directory, "\": ", error.message()));
  }
  settings.interval = absl::GetFlag(FLAGS_file_drop_interval);
  if (settings.interval < absl::Milliseconds(10)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--file_drop_interval: must be at least 10ms, "
                     "got ",
                     absl::FormatDuration(settings.interval)));
  }
  settings.consumers = absl::GetFlag(FLAGS_file_drop_consumers);
  if (settings.consumers.empty()) {
    return absl::InvalidArgumentError("--file_drop_consumers: name at least one");
  }
  return settings;
}

}  // namespace messaging
