#include "messaging/outbox_relay.h"

#include <algorithm>

#include "absl/time/clock.h"
#include "base/crash_point.h"
#include "base/latency_buckets.h"
#include "server_kit/log.h"

namespace messaging {
namespace {

prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {base::kLatencyBucketsSeconds.begin(), base::kLatencyBucketsSeconds.end()};
}

}  // namespace

OutboxRelay::OutboxRelay(OutboxStore& store, EventPublisher& publisher, base::Clock& clock,
                         prometheus::Registry& metrics, OutboxRelayOptions options)
    : store_(store),
      publisher_(publisher),
      clock_(clock),
      options_(options),
      unpublished_(prometheus::BuildGauge()
                       .Name("hospital_outbox_unpublished")
                       .Help("Outbox events committed and not yet acknowledged by the broker")
                       .Register(metrics)
                       .Add({})),
      oldest_age_(prometheus::BuildGauge()
                      .Name("hospital_outbox_oldest_unpublished_age_seconds")
                      .Help("Age of the oldest unpublished outbox event (0 when none)")
                      .Register(metrics)
                      .Add({})),
      published_(prometheus::BuildCounter()
                     .Name("hospital_outbox_published_total")
                     .Help("Outbox events acknowledged by the broker")
                     .Register(metrics)
                     .Add({})),
      errors_(prometheus::BuildCounter()
                  .Name("hospital_outbox_publish_errors_total")
                  .Help("Outbox events whose publication failed (retried later)")
                  .Register(metrics)
                  .Add({})),
      latency_(prometheus::BuildHistogram()
                   .Name("hospital_outbox_publish_latency_seconds")
                   .Help("From an event's commit to the broker's acknowledgement")
                   .Register(metrics)
                   .Add({}, LatencyBuckets())) {}

OutboxRelay::~OutboxRelay() { Stop(); }

std::vector<std::int64_t> OutboxRelay::Publish(const std::vector<PendingEvent>& batch,
                                               RelayPass& pass) {
  // From scratch: a claiming transaction run again after a deadlock publishes its batch again.
  pass.failed = 0;
  pass.error = absl::OkStatus();
  const std::vector<absl::Status> results = publisher_.Publish(batch);
  base::CrashPoint("relay.acknowledged");
  const absl::Time now = clock_.Now();
  std::vector<std::int64_t> acknowledged;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const absl::Status& result =
        i < results.size() ? results[i] : absl::InternalError("publisher returned no result");
    if (result.ok()) {
      acknowledged.push_back(batch[i].sequence);
      latency_.Observe(absl::ToDoubleSeconds(now - batch[i].create_time));
    } else {
      ++pass.failed;
      if (pass.error.ok()) pass.error = result;
    }
  }
  pass.published = static_cast<int>(acknowledged.size());
  return acknowledged;
}

RelayPass OutboxRelay::RelayOnce() {
  RelayPass pass;
  int taken = 0;
  absl::Status marked;
  if (store_.supports_claims()) {
    // Other replicas' relays work through the same table at once.
    absl::StatusOr<int> claimed = store_.PublishClaimed(
        options_.batch_size,
        [&](const std::vector<PendingEvent>& batch) { return Publish(batch, pass); },
        [this] { return clock_.Now(); });
    taken = claimed.ok() ? *claimed : 0;
    marked = claimed.status();
  } else {
    absl::StatusOr<std::vector<PendingEvent>> batch = store_.ReadUnpublished(options_.batch_size);
    if (!batch.ok()) {
      pass.error = batch.status();
      return pass;
    }
    if (batch->empty()) return pass;
    taken = static_cast<int>(batch->size());
    marked = store_.MarkPublished(Publish(*batch, pass), clock_.Now());
  }
  if (!marked.ok()) {
    // Published but not marked (or not even read): they go again next pass, as repeats the
    // broker or the consumers drop.
    pass.failed += pass.published;
    pass.published = 0;
    if (pass.error.ok()) pass.error = marked;
  }
  published_.Increment(pass.published);
  errors_.Increment(pass.failed);
  pass.more = pass.failed == 0 && taken == options_.batch_size;
  return pass;
}

absl::StatusOr<int> OutboxRelay::PruneOnce() {
  return store_.PrunePublished(clock_.Now() - options_.retention, options_.prune_batch);
}

void OutboxRelay::UpdateGauges() {
  absl::StatusOr<OutboxStats> stats = store_.Stats();
  if (!stats.ok()) return;
  unpublished_.Set(static_cast<double>(stats->unpublished));
  oldest_age_.Set(
      stats->oldest_unpublished.has_value()
          ? std::max(0.0, absl::ToDoubleSeconds(clock_.Now() - *stats->oldest_unpublished))
          : 0.0);
}

void OutboxRelay::Start() {
  base::MutexLock lock(&mutex_);
  if (thread_.has_value() || stopping_) return;
  thread_.emplace([this] { Loop(); });
}

void OutboxRelay::Stop() {
  {
    base::MutexLock lock(&mutex_);
    stopping_ = true;
    wake_.SignalAll();
  }
  if (thread_.has_value() && thread_->joinable()) thread_->join();
}

void OutboxRelay::Notify() {
  base::MutexLock lock(&mutex_);
  notified_ = true;
  wake_.Signal();
}

void OutboxRelay::Loop() {
  absl::Duration backoff = options_.initial_backoff;
  absl::Time next_prune = absl::Now();
  absl::Status last_logged = absl::OkStatus();
  while (true) {
    {
      base::MutexLock lock(&mutex_);
      if (stopping_) return;
      notified_ = false;
    }
    const RelayPass pass = RelayOnce();
    UpdateGauges();
    absl::Time wait_until;
    if (!pass.error.ok()) {
      // Logged when the failure changes, not on every pass of an outage.
      if (pass.error.code() != last_logged.code()) {
        server_kit::Log(server_kit::LogLevel::kWarning, "outbox_publish_failed",
                        {{"error", std::string(pass.error.message())},
                         {"published", std::to_string(pass.published)},
                         {"failed", std::to_string(pass.failed)}});
      }
      last_logged = pass.error;
      wait_until = absl::Now() + backoff;
      backoff = std::min(backoff * 2, options_.max_backoff);
    } else {
      if (!last_logged.ok()) {
        server_kit::Log(server_kit::LogLevel::kInfo, "outbox_publishing_again",
                        {{"published", std::to_string(pass.published)}});
        last_logged = absl::OkStatus();
      }
      backoff = options_.initial_backoff;
      if (pass.more) continue;
      if (absl::Now() >= next_prune) {
        (void)PruneOnce();  // A failure shows in the storage metrics; the next prune retries.
        next_prune = absl::Now() + options_.idle_poll;
      }
      wait_until = absl::Now() + options_.idle_poll;
    }
    base::MutexLock lock(&mutex_);
    // While backing off, a Notify does not cut the wait short: the broker is still down.
    while (!stopping_ && (!pass.error.ok() || !notified_) && absl::Now() < wait_until) {
      wake_.WaitWithDeadline(&mutex_, wait_until);
    }
  }
}

}  // namespace messaging
