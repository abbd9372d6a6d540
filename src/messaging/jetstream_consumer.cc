#include "messaging/jetstream_consumer.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/crash_point.h"
#include "base/latency_buckets.h"
#include "server_kit/log.h"

namespace messaging {
namespace {

constexpr char kMessageIdHeader[] = "Nats-Msg-Id";

// One fetched message on its way through the batch.
}  // namespace

struct JetStreamConsumer::Fetched {
  natsMsg* message = nullptr;
  InboundEvent event;
  absl::Time stream_time = absl::InfinitePast();
  bool hang = false;
  std::optional<absl::Status> aborted;
};

namespace {

// A fetched message as the inbox takes it: its id (Nats-Msg-Id, or the stream sequence for a
// message published without one), subject, payload, sequence and deliveries so far.
void ReadMessage(natsMsg* message, InboundEvent& event, absl::Time& stream_time) {
  jsMsgMetaData* meta = nullptr;
  if (natsMsg_GetMetaData(&meta, message) == NATS_OK) {
    event.stream_sequence = meta->Sequence.Stream;
    event.deliveries = meta->NumDelivered;
    stream_time = absl::FromUnixNanos(meta->Timestamp);
    jsMsgMetaData_Destroy(meta);
  }
  const char* id = nullptr;
  if (natsMsgHeader_Get(message, kMessageIdHeader, &id) == NATS_OK && id != nullptr &&
      *id != '\0') {
    event.event_id = id;
  } else {
    event.event_id = absl::StrCat("stream-sequence-", event.stream_sequence);
  }
  event.subject = natsMsg_GetSubject(message);
  event.payload.assign(natsMsg_GetData(message),
                       static_cast<std::size_t>(natsMsg_GetDataLength(message)));
}

}  // namespace

JetStreamConsumer::JetStreamConsumer(NatsClient& client, Inbox& inbox,
                                     server_kit::FaultInjector* faults,
                                     prometheus::Registry& metrics,
                                     JetStreamConsumerOptions options)
    : client_(client),
      inbox_(inbox),
      faults_(faults),
      options_(std::move(options)),
      consumed_(prometheus::BuildCounter()
                    .Name("hospital_events_consumed_total")
                    .Help("Events handled by a consumer, by outcome: applied, duplicate "
                          "(delivered again, no second effect), rejected (can never be applied; "
                          "recorded and terminated), retry (transient failure, redelivered), "
                          "hang (injected; left to redelivery)")
                    .Register(metrics)),
      age_(prometheus::BuildHistogram()
               .Name("hospital_event_age_seconds")
               .Help("From an event's arrival in the stream to its effect being committed")
               .Register(metrics)
               .Add({{"consumer", options_.consumer.durable}},
                    prometheus::Histogram::BucketBoundaries(base::kLatencyBucketsSeconds.begin(),
                                                            base::kLatencyBucketsSeconds.end()))),
      pending_(prometheus::BuildGauge()
                   .Name("hospital_consumer_pending")
                   .Help("Events the broker holds for this consumer: not yet delivered plus "
                         "delivered and not yet acknowledged")
                   .Register(metrics)
                   .Add({{"consumer", options_.consumer.durable}})) {}

JetStreamConsumer::~JetStreamConsumer() {
  Stop();
  if (subscription_ != nullptr) natsSubscription_Destroy(subscription_);
}

void JetStreamConsumer::Start() {
  base::MutexLock lock(&mutex_);
  if (thread_.has_value() || stopping_) return;
  thread_.emplace([this] { Loop(); });
}

void JetStreamConsumer::Stop() {
  {
    base::MutexLock lock(&mutex_);
    stopping_ = true;
    wake_.SignalAll();
  }
  if (thread_.has_value() && thread_->joinable()) thread_->join();
}

bool JetStreamConsumer::stopping() {
  base::MutexLock lock(&mutex_);
  return stopping_;
}

absl::Status JetStreamConsumer::Subscribe() {
  jsCtx* jetstream = client_.jetstream();
  absl::StatusOr<std::string> stream = EnsureStream(jetstream, options_.stream);
  if (!stream.ok()) return stream.status();
  if (!stream->empty()) {
    server_kit::Log(server_kit::LogLevel::kWarning, "stream_config_differs",
                    {{"stream", options_.stream.name},
                     {"differences", *stream},
                     {"hint", "the existing stream is used as it is"}});
  }
  absl::StatusOr<std::string> consumer =
      EnsureConsumer(jetstream, options_.stream.name, options_.consumer);
  if (!consumer.ok()) return consumer.status();
  if (!consumer->empty()) {
    server_kit::Log(server_kit::LogLevel::kWarning, "consumer_config_differs",
                    {{"consumer", options_.consumer.durable},
                     {"differences", *consumer},
                     {"hint", "the existing consumer is used as it is"}});
  }
  jsSubOptions subscribe;
  jsSubOptions_Init(&subscribe);
  subscribe.Stream = options_.stream.name.c_str();
  subscribe.Consumer = options_.consumer.durable.c_str();
  subscribe.ManualAck = true;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus status =
      js_PullSubscribe(&subscription_, jetstream, options_.consumer.filter_subject.c_str(),
                       options_.consumer.durable.c_str(), nullptr, &subscribe, &code);
  if (status != NATS_OK) {
    subscription_ = nullptr;
    return FromJetStreamError(status, code,
                              absl::StrCat("subscribing as consumer ", options_.consumer.durable));
  }
  server_kit::Log(server_kit::LogLevel::kInfo, "consumer_subscribed",
                  {{"consumer", options_.consumer.durable}, {"stream", options_.stream.name}});
  return absl::OkStatus();
}

void JetStreamConsumer::Loop() {
  absl::Status last_failure = absl::OkStatus();
  while (!stopping()) {
    absl::Status failure = absl::OkStatus();
    if (subscription_ == nullptr) failure = Subscribe();
    if (failure.ok() && !ConsumeOnce()) failure = absl::UnavailableError("fetch failed");
    if (failure.ok()) {
      last_failure = absl::OkStatus();
      if (pause_ > absl::ZeroDuration()) {
        base::MutexLock lock(&mutex_);
        const absl::Time until = absl::Now() + pause_;
        while (!stopping_ && absl::Now() < until) wake_.WaitWithDeadline(&mutex_, until);
      }
      continue;
    }
    if (failure.code() != last_failure.code()) {
      server_kit::Log(
          server_kit::LogLevel::kWarning, "consumer_waiting_for_broker",
          {{"consumer", options_.consumer.durable}, {"error", std::string(failure.message())}});
    }
    last_failure = failure;
    base::MutexLock lock(&mutex_);
    const absl::Time until = absl::Now() + client_.options().reconnect_wait;
    while (!stopping_ && absl::Now() < until) wake_.WaitWithDeadline(&mutex_, until);
  }
}

void JetStreamConsumer::UpdatePending() {
  const absl::Time now = absl::Now();
  if (now < next_pending_update_) return;
  next_pending_update_ = now + absl::Seconds(1);
  jsConsumerInfo* info = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  if (js_GetConsumerInfo(&info, client_.jetstream(), options_.stream.name.c_str(),
                         options_.consumer.durable.c_str(), nullptr, &code) != NATS_OK) {
    return;
  }
  pending_.Set(static_cast<double>(info->NumPending) + static_cast<double>(info->NumAckPending));
  jsConsumerInfo_Destroy(info);
}

bool JetStreamConsumer::ConsumeOnce() {
  natsMsgList list{nullptr, 0};
  jsErrCode code = static_cast<jsErrCode>(0);
  const natsStatus status = natsSubscription_Fetch(
      &list, subscription_, pause_ > absl::ZeroDuration() ? 1 : options_.batch_size,
      absl::ToInt64Milliseconds(options_.fetch_wait), &code);
  if (status == NATS_TIMEOUT) {
    UpdatePending();
    return true;
  }
  if (status != NATS_OK) {
    if (code == JSConsumerNotFoundErr || code == JSStreamNotFoundErr ||
        status == NATS_INVALID_SUBSCRIPTION || status == NATS_CONNECTION_CLOSED) {
      // The broker lost the consumer (a new, empty store): subscribe again from scratch.
      natsSubscription_Destroy(subscription_);
      subscription_ = nullptr;
    }
    return false;
  }
  std::vector<Fetched> batch(static_cast<std::size_t>(list.Count));
  for (int i = 0; i < list.Count; ++i) {
    Fetched& fetched = batch[static_cast<std::size_t>(i)];
    fetched.message = list.Msgs[i];
    ReadMessage(fetched.message, fetched.event, fetched.stream_time);
  }
  base::CrashPoint("consumer.fetched");
  HandleBatch(batch);
  SettleFailures(batch);
  natsMsgList_Destroy(&list);
  UpdatePending();
  return true;
}

void JetStreamConsumer::Count(const char* outcome) {
  consumed_.Add({{"consumer", options_.consumer.durable}, {"outcome", outcome}}).Increment();
}

void JetStreamConsumer::HandleBatch(std::vector<Fetched>& batch) {
  std::vector<std::size_t> queued;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    Fetched& fetched = batch[i];
    // Decided event by event, as the consumer reaches it: a rule set or cleared meanwhile
    // applies from the next event on, as it would to the next RPC.
    server_kit::FaultDecision decision;
    if (faults_ != nullptr && !options_.fault_method.empty()) {
      decision = faults_->Decide(options_.fault_method);
    }
    switch (decision.kind) {
      case server_kit::FaultDecision::Kind::kAbort:
        Count("retry");
        fetched.aborted = decision.abort_status;
        break;
      case server_kit::FaultDecision::Kind::kHang:
        Count("hang");
        fetched.hang = true;
        break;
      case server_kit::FaultDecision::Kind::kDelay: {
        // A slow handling of this event: the events before it are applied and acknowledged
        // first, so that none waits unacknowledged behind a chain of delays.
        ApplyAndSettle(batch, queued);
        base::MutexLock lock(&mutex_);
        const absl::Time until = absl::Now() + decision.delay;
        while (!stopping_ && absl::Now() < until) wake_.WaitWithDeadline(&mutex_, until);
        queued.push_back(i);
        break;
      }
      case server_kit::FaultDecision::Kind::kNone:
        queued.push_back(i);
        break;
    }
    if (decision.kind == server_kit::FaultDecision::Kind::kDelay) ApplyAndSettle(batch, queued);
  }
  ApplyAndSettle(batch, queued);
}

void JetStreamConsumer::ApplyAndSettle(std::vector<Fetched>& batch,
                                       std::vector<std::size_t>& queued) {
  std::vector<InboundEvent> events;
  for (std::size_t index : queued) events.push_back(batch[index].event);
  const std::vector<EventOutcome> outcomes = inbox_.Process(events);
  // An acknowledgement only ever follows the commit of what it acknowledges: a crash before
  // it costs a redelivery, recognised as a duplicate; one after it, nothing.
  if (!events.empty()) base::CrashPoint("consumer.committed");
  const absl::Time now = absl::Now();
  for (std::size_t k = 0; k < outcomes.size(); ++k) {
    Fetched& fetched = batch[queued[k]];
    const EventOutcome& outcome = outcomes[k];
    Count(DispositionName(outcome.disposition));
    switch (outcome.disposition) {
      case Disposition::kApplied:
        age_.Observe(std::max(0.0, absl::ToDoubleSeconds(now - fetched.stream_time)));
        natsMsg_Ack(fetched.message, nullptr);
        break;
      case Disposition::kDuplicate:
        natsMsg_Ack(fetched.message, nullptr);
        break;
      case Disposition::kRejected:
        server_kit::Log(server_kit::LogLevel::kError, "event_rejected",
                        {{"consumer", options_.consumer.durable},
                         {"event_id", fetched.event.event_id},
                         {"stream_sequence", std::to_string(fetched.event.stream_sequence)},
                         {"reason", std::string(outcome.status.message())}});
        natsMsg_Term(fetched.message, nullptr);
        break;
      case Disposition::kRetry:
        if (fetched.event.deliveries <= 1 || fetched.event.deliveries % 10 == 0) {
          server_kit::Log(server_kit::LogLevel::kWarning, "event_retry",
                          {{"consumer", options_.consumer.durable},
                           {"event_id", fetched.event.event_id},
                           {"deliveries", std::to_string(fetched.event.deliveries)},
                           {"error", std::string(outcome.status.message())}});
        }
        fetched.aborted = outcome.status;
        break;
    }
  }
  if (!events.empty()) base::CrashPoint("consumer.acknowledged");
  queued.clear();
}

void JetStreamConsumer::SettleFailures(std::vector<Fetched>& batch) {
  // Every event handled failed transiently: an outage (see the header).
  int handled = 0;
  int transient = 0;
  for (const Fetched& fetched : batch) {
    if (fetched.hang) continue;
    ++handled;
    if (fetched.aborted.has_value()) ++transient;
  }
  const bool outage = handled > 0 && transient == handled;
  pause_ = outage ? std::clamp(pause_ * 2, options_.initial_pause, options_.max_pause)
                  : absl::ZeroDuration();
  for (Fetched& fetched : batch) {
    if (!fetched.aborted.has_value()) continue;
    if (outage) {
      natsMsg_Nak(fetched.message, nullptr);
    } else {
      // natsMsg_NakWithDelay takes milliseconds (the consumer configuration, nanoseconds).
      const int deliveries =
          static_cast<int>(std::min<std::uint64_t>(fetched.event.deliveries, 1000));
      natsMsg_NakWithDelay(
          fetched.message,
          absl::ToInt64Milliseconds(resilience::BackoffCeiling(options_.redelivery, deliveries)),
          nullptr);
    }
  }
}

}  // namespace messaging
