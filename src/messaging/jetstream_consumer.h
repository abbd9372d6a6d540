// A durable JetStream pull consumer feeding an Inbox (inbox.h): fetches a batch, applies it in
// one local transaction, then acknowledges each event by its outcome:
//   applied, duplicate   Ack
//   rejected             Term (never redelivered; the inbox recorded it with its reason)
//   transient failure    NakWithDelay, the delay growing with the delivery count
// When every event of a batch fails transiently, the service (or its database) is down rather
// than one event bad: the events are released for redelivery at once, and the consumer pauses
// and then probes with one event at a time, the pause doubling up to max_pause, until one
// succeeds. An outage thus costs about one attempt per pause, not one per event per backoff,
// and the backlog starts draining within max_pause of the recovery.
//
// Faults: every event is first put to the service's FaultInjector as a call of `fault_method`
// ("/hospital.morgue.v1.MorgueEvents/PatientDied"), so the benchmark's rules reach the
// asynchronous path as they reach an RPC: an abort is a transient failure (redelivered with
// backoff), a delay sleeps before that event is applied (a slow service: the consumer handles
// events one after another, so a delay of d caps it at 1/d events a second), a hang leaves the
// event unacknowledged until the broker redelivers it after AckWait (a service that stopped
// answering).
//
// It (re)creates the stream and its consumer whenever it has no subscription (at start, and
// after the broker lost them), and keeps trying while the broker is away.
//
// Metrics (label `consumer`): hospital_events_consumed_total{outcome}, hospital_event_age_seconds
// (stream time to applied), hospital_consumer_pending (the broker's backlog for this consumer:
// undelivered plus unacknowledged).
#ifndef HOSPITAL_SRC_MESSAGING_JETSTREAM_CONSUMER_H_
#define HOSPITAL_SRC_MESSAGING_JETSTREAM_CONSUMER_H_

#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nats/nats.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/time/time.h"
#include "base/sync.h"
#include "messaging/inbox.h"
#include "messaging/jetstream_setup.h"
#include "messaging/nats_client.h"
#include "resilience/backoff.h"
#include "server_kit/fault_injection.h"

namespace messaging {

struct JetStreamConsumerOptions {
  StreamSettings stream;
  ConsumerSettings consumer;
  // Events fetched and applied together (one transaction, one fsync).
  int batch_size = 64;
  // How long a fetch waits for the first event.
  absl::Duration fetch_wait = absl::Milliseconds(500);
  // Redelivery delay after a transient failure: the backoff's ceiling for the delivery count
  // (100 ms doubling to 5 s; no jitter: the broker spreads redeliveries itself).
  resilience::BackoffConfig redelivery = {absl::Milliseconds(100), absl::Seconds(5), 2.0};
  // Pause between probes while every event fails (see above): initial, doubling to max.
  absl::Duration initial_pause = absl::Milliseconds(50);
  absl::Duration max_pause = absl::Milliseconds(500);
  // The pseudo-method fault rules match ("/package.Service/Method"); empty: no faults.
  std::string fault_method;
};

class JetStreamConsumer final {
 public:
  // Everything passed in must outlive this object; `faults` may be null.
  JetStreamConsumer(NatsClient& client, Inbox& inbox, server_kit::FaultInjector* faults,
                    prometheus::Registry& metrics, JetStreamConsumerOptions options);
  ~JetStreamConsumer();
  JetStreamConsumer(const JetStreamConsumer&) = delete;
  JetStreamConsumer& operator=(const JetStreamConsumer&) = delete;

  void Start();
  // Stops after the batch in hand (idempotent).
  void Stop();

 private:
  // A fetched message and what became of it.
  struct Fetched;

  void Loop();
  // Creates the stream, the consumer and the subscription; logs what differs.
  absl::Status Subscribe();
  // Fetches and handles one batch; returns false if the fetch failed (not merely empty).
  bool ConsumeOnce();
  // Decides the injected faults event by event and applies the batch, in more than one
  // transaction where a delay splits it.
  void HandleBatch(std::vector<Fetched>& batch);
  // Applies the events `queued` (indices into `batch`) in one inbox transaction, then
  // acknowledges the applied and duplicate ones and terminates the rejected; a failed one is
  // marked for SettleFailures. Empties `queued`.
  void ApplyAndSettle(std::vector<Fetched>& batch, std::vector<std::size_t>& queued);
  // Negatively acknowledges the failed events: at once in an outage (every event failed: the
  // consumer pauses and probes), else with the redelivery backoff of their delivery count.
  void SettleFailures(std::vector<Fetched>& batch);
  void Count(const char* outcome);
  void UpdatePending();
  bool stopping();

  NatsClient& client_;
  Inbox& inbox_;
  server_kit::FaultInjector* const faults_;
  const JetStreamConsumerOptions options_;
  prometheus::Family<prometheus::Counter>& consumed_;
  prometheus::Histogram& age_;
  prometheus::Gauge& pending_;
  // Only the loop's thread touches these.
  natsSubscription* subscription_ = nullptr;
  absl::Duration pause_ = absl::ZeroDuration();  // Zero unless probing after an outage.
  absl::Time next_pending_update_ = absl::InfinitePast();

  base::Mutex mutex_;
  base::CondVar wake_;
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  std::optional<std::thread> thread_;
};

}  // namespace messaging

#endif  // HOSPITAL_SRC_MESSAGING_JETSTREAM_CONSUMER_H_
