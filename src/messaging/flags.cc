#include "messaging/flags.h"

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"

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

}  // namespace messaging
