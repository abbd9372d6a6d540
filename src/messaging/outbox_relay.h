// The outbox relay: publishes outbox events (outbox.h) to the broker in commit order and marks
// them published once the broker has acknowledged them.
//
//   OutboxRelay relay(store, publisher, clock, metrics, options);
//   relay.Start();      // a thread of its own
//   ... after each commit that appended an event: relay.Notify();
//   relay.Stop();
//
// Each pass reads up to batch_size unpublished events and hands them to the publisher, which
// pipelines them (all sent, then the acknowledgements awaited together). Events acknowledged are
// marked published in one transaction; the first one that failed, and everything after it, is
// tried again on the next pass, after a backoff while failures continue (the broker is down, or
// refused). Commit order therefore holds for what the broker stores, except when a pipelined
// event failed while a later one got through: the later one is then stored first, and its
// retry is a repeat the broker's duplicate window drops. Only deaths are published, one per
// patient, so no consumer depends on order across events.
//
// On PostgreSQL every replica of the service runs a relay over the same table: each pass claims
// its events (OutboxStore::PublishClaimed) for as long as it publishes them, so relays never
// send the same event at once, and one aggregate's events still leave in order.
//
// The relay wakes on Notify, so an event leaves about as soon as it is committed, and every
// idle_poll in any case (an event committed by a process that died before notifying, or while
// the relay was backing off). Published rows are pruned once older than `retention`.
//
// Metrics: hospital_outbox_unpublished (depth), hospital_outbox_oldest_unpublished_age_seconds,
// hospital_outbox_published_total, hospital_outbox_publish_errors_total,
// hospital_outbox_publish_latency_seconds (commit to broker acknowledgement).
#ifndef HOSPITAL_SRC_MESSAGING_OUTBOX_RELAY_H_
#define HOSPITAL_SRC_MESSAGING_OUTBOX_RELAY_H_

#include <optional>
#include <thread>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "base/sync.h"
#include "messaging/outbox.h"

namespace messaging {

// Sends events to the broker. Implemented over JetStream (jetstream_publisher.h) and by fakes.
class EventPublisher {
 public:
  virtual ~EventPublisher() = default;
  // Publishes `events`, in order, and returns one status per event: OK once the broker has
  // stored it (or recognised it as a repeat). May block up to its own timeout.
  virtual std::vector<absl::Status> Publish(const std::vector<PendingEvent>& events) = 0;
};

struct OutboxRelayOptions {
  int batch_size = 512;
  absl::Duration idle_poll = absl::Seconds(1);
  // Backoff while passes fail: doubles from initial to max, reset by a pass that publishes.
  absl::Duration initial_backoff = absl::Milliseconds(50);
  absl::Duration max_backoff = absl::Milliseconds(500);
  absl::Duration retention = absl::Minutes(1);
  int prune_batch = 5000;
};

// What one pass did.
struct RelayPass {
  int published = 0;
  int failed = 0;
  // Unpublished events were left because the batch was full: run again at once.
  bool more = false;
  absl::Status error;  // The first failure, if any.
};

class OutboxRelay final {
 public:
  // Everything passed in must outlive this object. `clock` stamps publish times and ages.
  OutboxRelay(OutboxStore& store, EventPublisher& publisher, base::Clock& clock,
              prometheus::Registry& metrics, OutboxRelayOptions options = {});
  ~OutboxRelay();
  OutboxRelay(const OutboxRelay&) = delete;
  OutboxRelay& operator=(const OutboxRelay&) = delete;

  // One pass: publish the oldest unpublished batch and mark what was acknowledged.
  RelayPass RelayOnce();
  // Deletes published events older than `retention`; returns how many went.
  absl::StatusOr<int> PruneOnce();
  // Refreshes the depth and age gauges.
  void UpdateGauges();

  // Runs passes on a thread of its own until Stop (idempotent; waits for a pass to finish).
  void Start();
  void Stop();
  // New events were committed: run a pass soon. Cheap; callable from any thread.
  void Notify();

 private:
  void Loop();
  // Hands `batch` to the publisher; returns the sequences acknowledged, counting the rest in
  // `pass`.
  std::vector<std::int64_t> Publish(const std::vector<PendingEvent>& batch, RelayPass& pass);

  OutboxStore& store_;
  EventPublisher& publisher_;
  base::Clock& clock_;
  const OutboxRelayOptions options_;
  prometheus::Gauge& unpublished_;
  prometheus::Gauge& oldest_age_;
  prometheus::Counter& published_;
  prometheus::Counter& errors_;
  prometheus::Histogram& latency_;

  base::Mutex mutex_;
  base::CondVar wake_;
  bool notified_ ABSL_GUARDED_BY(mutex_) = false;
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  std::optional<std::thread> thread_;
};

}  // namespace messaging

#endif  // HOSPITAL_SRC_MESSAGING_OUTBOX_RELAY_H_
