// A connection to NATS with a JetStream context, set up for services that must outlive the
// broker: it starts even while NATS is down, reconnects forever, and reports its state.
//
//   ASSIGN_OR_RETURN(auto client, NatsClient::Create({.url = "nats://nats:4222",
//                                                     .name = "patients"}, metrics));
//   js_PublishMsgAsync(client->jetstream(), &msg, &options);
//
// libnats's defaults (2 s between attempts, give up after 60, fail at once when the first
// connect finds no server) would leave a service that started before NATS, or outlived a long
// outage, without a connection for good. Here a failed first connect is retried in the
// background like a reconnect, attempts never stop, and the wait between them is short so that
// a backlog starts draining soon after the broker is back.
//
// Thread-safe (libnats connections and JetStream contexts are).
#ifndef HOSPITAL_SRC_MESSAGING_NATS_CLIENT_H_
#define HOSPITAL_SRC_MESSAGING_NATS_CLIENT_H_

#include <memory>
#include <string>

#include <nats/nats.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace messaging {

struct NatsClientOptions {
  // One URL or several, comma-separated ("nats://a:4222,nats://b:4222").
  std::string url = "nats://127.0.0.1:4222";
  // Shown in the server's connection list; also the metrics' `client` label.
  std::string name;
  absl::Duration reconnect_wait = absl::Milliseconds(250);
  // Bytes buffered for publishing while disconnected; publishing beyond fails.
  int reconnect_buffer_bytes = 8 << 20;
  // Time limit of JetStream API requests (stream and consumer management, synchronous acks).
  absl::Duration api_timeout = absl::Seconds(5);
  // Async publish: at most this many unacknowledged messages in flight.
  int max_pending_publishes = 4096;
  // TLS to the broker: on when `tls_ca` is set (PEM CA the servers' certificates are checked
  // against). `tls_cert` and `tls_key` are this client's certificate, for a server that verifies
  // clients. The server's certificate must name `tls_server_name` (default: the host of the
  // first URL), which libnats checks only when told to. libnats reads these files once, at
  // start: a renewed certificate needs a restart (unlike the gRPC listeners, which watch theirs).
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
};

// Maps a libnats status to an absl::Status: timeouts DEADLINE_EXCEEDED; connection problems
// (closed, reconnecting, no server, no responders) UNAVAILABLE; NOT_FOUND as such; an invalid
// argument INVALID_ARGUMENT; anything else INTERNAL. `context` says what was being done.
absl::Status FromNatsStatus(natsStatus status, absl::string_view context);
// The same for a JetStream API error, whose code (jsErrCode) says more than the status.
absl::Status FromJetStreamError(natsStatus status, jsErrCode code, absl::string_view context);

class NatsClient final {
 public:
  // Starts connecting; returns at once even if no server answers yet (the connection is then
  // re-established in the background). INVALID_ARGUMENT for a malformed URL.
  static absl::StatusOr<std::unique_ptr<NatsClient>> Create(const NatsClientOptions& options,
                                                            prometheus::Registry& metrics);
  ~NatsClient();
  NatsClient(const NatsClient&) = delete;
  NatsClient& operator=(const NatsClient&) = delete;

  // JetStream context without an async-publish ack handler: for stream and consumer management,
  // consuming and acknowledging.
  jsCtx* jetstream() const { return jetstream_; }
  natsConnection* connection() const { return connection_; }
  const NatsClientOptions& options() const { return options_; }
  bool connected() const;

  // A JetStream context for asynchronous publishing whose acknowledgements go to `handler`
  // (see jsPubAckHandler). Owned by the caller (jsCtx_Destroy), before this client goes.
  absl::StatusOr<jsCtx*> NewPublishingContext(jsPubAckHandler handler, void* closure) const;

 private:
  NatsClient(NatsClientOptions options, prometheus::Registry& metrics);
  static void OnDisconnected(natsConnection* connection, void* closure);
  static void OnReconnected(natsConnection* connection, void* closure);
  static void OnConnected(natsConnection* connection, void* closure);
  static void OnClosed(natsConnection* connection, void* closure);
  jsOptions BaseJetStreamOptions() const;

  const NatsClientOptions options_;
  prometheus::Gauge& connected_gauge_;
  prometheus::Counter& disconnects_;
  natsOptions* nats_options_ = nullptr;
  natsConnection* connection_ = nullptr;
  jsCtx* jetstream_ = nullptr;
  // libnats runs the callbacks above on a thread of its own, the disconnected one also while
  // closing; the closed callback is the last of them, so the destructor waits for it before
  // the members they use go. (absl's Notification, unlike a bare flag and mutex, may be
  // destroyed as soon as its waiter returns.)
  absl::Notification closed_;
};

}  // namespace messaging

#endif  // HOSPITAL_SRC_MESSAGING_NATS_CLIENT_H_
