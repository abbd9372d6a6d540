#include "messaging/jetstream_publisher.h"

#include "absl/strings/str_cat.h"
#include "base/crash_point.h"
#include "server_kit/log.h"

namespace messaging {
namespace {

constexpr char kMessageIdHeader[] = "Nats-Msg-Id";
constexpr char kEventTypeHeader[] = "Hospital-Event-Type";

}  // namespace

absl::StatusOr<std::unique_ptr<JetStreamPublisher>> JetStreamPublisher::Create(
    NatsClient& client, StreamSettings stream, absl::Duration ack_timeout) {
  std::unique_ptr<JetStreamPublisher> publisher(
      new JetStreamPublisher(client, std::move(stream), ack_timeout));
  absl::StatusOr<jsCtx*> context =
      client.NewPublishingContext(&JetStreamPublisher::OnAck, publisher.get());
  if (!context.ok()) return context.status();
  publisher->publishing_ = *context;
  return publisher;
}

JetStreamPublisher::~JetStreamPublisher() {
  if (publishing_ != nullptr) jsCtx_Destroy(publishing_);
}

absl::Status JetStreamPublisher::EnsureStreamOnce() {
  if (stream_ensured_) return absl::OkStatus();
  absl::StatusOr<std::string> differences = EnsureStream(client_.jetstream(), stream_);
  if (!differences.ok()) return differences.status();
  if (!differences->empty()) {
    server_kit::Log(server_kit::LogLevel::kWarning, "stream_config_differs",
                    {{"stream", stream_.name},
                     {"differences", *differences},
                     {"hint", "the existing stream is used as it is"}});
  }
  stream_ensured_ = true;
  return absl::OkStatus();
}

std::vector<absl::Status> JetStreamPublisher::Publish(const std::vector<PendingEvent>& events) {
  // While disconnected, publishing would only fill the reconnect buffer and wait out the ack
  // timeout; failing at once lets the relay retry soon after the connection is back.
  if (!client_.connected()) {
    return std::vector<absl::Status>(events.size(),
                                     absl::UnavailableError("not connected to the broker"));
  }
  if (absl::Status ensured = EnsureStreamOnce(); !ensured.ok()) {
    return std::vector<absl::Status>(events.size(), ensured);
  }
  {
    base::MutexLock lock(&mutex_);
    in_flight_.clear();
    results_.assign(events.size(), absl::DeadlineExceededError(
                                       absl::StrCat("no acknowledgement from the broker within ",
                                                    absl::FormatDuration(ack_timeout_))));
    for (std::size_t i = 0; i < events.size(); ++i) in_flight_[events[i].event.event_id] = i;
  }
  jsPubOptions options;
  jsPubOptions_Init(&options);
  options.ExpectStream = stream_.name.c_str();
  for (std::size_t i = 0; i < events.size(); ++i) {
    const OutboxEvent& event = events[i].event;
    natsMsg* message = nullptr;
    natsStatus status =
        natsMsg_Create(&message, event.subject.c_str(), nullptr, event.payload.data(),
                       static_cast<int>(event.payload.size()));
    if (status == NATS_OK)
      status = natsMsgHeader_Set(message, kMessageIdHeader, event.event_id.c_str());
    if (status == NATS_OK)
      status = natsMsgHeader_Set(message, kEventTypeHeader, event.event_type.c_str());
    if (status == NATS_OK) status = js_PublishMsgAsync(publishing_, &message, &options);
    natsMsg_Destroy(message);  // No-op once the library took it.
    if (status != NATS_OK) {
      // Nothing after it is sent, so that a failure does not reorder the batch.
      const absl::Status failed =
          FromNatsStatus(status, absl::StrCat("publishing event ", event.event_id));
      base::MutexLock lock(&mutex_);
      for (std::size_t j = i; j < events.size(); ++j) {
        in_flight_.erase(events[j].event.event_id);
        results_[j] = failed;
      }
      break;
    }
  }
  base::CrashPoint("publisher.sent");
  jsPubOptions wait;
  jsPubOptions_Init(&wait);
  wait.MaxWait = absl::ToInt64Milliseconds(ack_timeout_);
  (void)js_PublishAsyncComplete(publishing_, &wait);
  // What was not acknowledged in time is taken back (and destroyed): it is retried from the
  // outbox, and a late acknowledgement of it is ignored.
  natsMsgList pending;
  if (js_PublishAsyncGetPendingList(&pending, publishing_) == NATS_OK)
    natsMsgList_Destroy(&pending);
  std::vector<absl::Status> results;
  {
    base::MutexLock lock(&mutex_);
    in_flight_.clear();
    results.swap(results_);
  }
  for (const absl::Status& result : results) {
    if (!result.ok()) {
      stream_ensured_ = false;  // The broker may have lost the stream; check before the retry.
      break;
    }
  }
  return results;
}

void JetStreamPublisher::OnAck(jsCtx* /*context*/, natsMsg* message, jsPubAck* ack,
                               jsPubAckErr* error, void* closure) {
  auto* publisher = static_cast<JetStreamPublisher*>(closure);
  const char* event_id = nullptr;
  if (natsMsgHeader_Get(message, kMessageIdHeader, &event_id) == NATS_OK && event_id != nullptr) {
    base::MutexLock lock(&publisher->mutex_);
    auto it = publisher->in_flight_.find(event_id);
    if (it != publisher->in_flight_.end()) {
      // A repeat within the duplicate window (ack->Duplicate) is stored already: success.
      if (ack != nullptr) {
        publisher->results_[it->second] = absl::OkStatus();
      } else if (error != nullptr) {
        publisher->results_[it->second] = absl::UnavailableError(absl::StrCat(
            "broker refused event ", event_id, ": ",
            error->ErrText != nullptr ? error->ErrText : natsStatus_GetText(error->Err)));
      }
      publisher->in_flight_.erase(it);
    }
  }
  natsMsg_Destroy(message);
}

}  // namespace messaging
