// The JetStream consumer's acknowledgement discipline, against a real nats-server: an event is
// acknowledged only once its effect (or its recognition as a duplicate) is committed; a transient
// failure leaves it unacknowledged and its redelivery applies it; a duplicate is acknowledged
// and counted; a poison event is terminated, recorded with its reason, and never redelivered.
// What the broker says about the consumer (acks pending, redeliveries) is read from the broker
// itself, so that a consumer that acknowledges too early, too late or the wrong way fails here.
#include <nats/nats.h>
#include <prometheus/registry.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/clock.h"
#include "base/status.h"
#include "base/sync.h"
#include "messaging/inbox.h"
#include "messaging/jetstream_consumer.h"
#include "messaging/jetstream_setup.h"
#include "messaging/nats_client.h"
#include "server_kit/database.h"
#include "support/hospital_fixture.h"
#include "support/test_database.h"
#include "testing_support/metrics_reader.h"
#include "testing_support/nats_server.h"
#include "testing_support/service_process.h"

namespace {

using messaging::InboundEvent;
using server_kit::Database;
using testing_support::Eventually;
using testing_support::PostgresEngine;
using testing_support::SqliteEngine;

constexpr char kSubject[] = "hospital.patients.v1.patient_died";
constexpr char kDurable[] = "under-test";
// Short, so that an event left unacknowledged is redelivered within the test.
constexpr absl::Duration kAckWait = absl::Seconds(1);

// Writes an effect row per event, then answers as scripted for that event: one status per
// delivery (OK once the script runs out). Can hold a delivery inside the inbox's transaction
// until released, so that the test can look at the broker meanwhile.
class ScriptedHandler final : public messaging::EventHandler {
 public:
  absl::Status Apply(Database::Session& session, const InboundEvent& event,
                     absl::Time /*now*/) override {
    std::optional<absl::Status> answer;
    {
      base::MutexLock lock(&mutex_);
      ++calls_[event.event_id];
      if (hold_ == event.event_id) {
        held_ = true;
        changed_.SignalAll();
        while (hold_ == event.event_id) changed_.Wait(&mutex_);
      }
      auto& script = scripts_[event.event_id];
      if (!script.empty()) {
        answer = script.front();
        script.pop_front();
      }
    }
    server_kit::Statement& insert = session.Prepare("INSERT INTO effects (event_id) VALUES (?1)");
    insert.BindText(1, event.event_id);
    RETURN_IF_ERROR(insert.Run());
    return answer.value_or(absl::OkStatus());
  }

  void Script(const std::string& event_id, std::deque<absl::Status> answers) {
    base::MutexLock lock(&mutex_);
    scripts_[event_id] = std::move(answers);
  }
  // The next delivery of `event_id` waits inside Apply until Release.
  void Hold(const std::string& event_id) {
    base::MutexLock lock(&mutex_);
    hold_ = event_id;
    held_ = false;
  }
  bool WaitUntilHeld(absl::Duration timeout) {
    base::MutexLock lock(&mutex_);
    const absl::Time until = absl::Now() + timeout;
    while (!held_ && absl::Now() < until) changed_.WaitWithDeadline(&mutex_, until);
    return held_;
  }
  void Release() {
    base::MutexLock lock(&mutex_);
    hold_.clear();
    changed_.SignalAll();
  }
  int Calls(const std::string& event_id) {
    base::MutexLock lock(&mutex_);
    return calls_[event_id];
  }

 private:
  base::Mutex mutex_;
  base::CondVar changed_;
  std::map<std::string, std::deque<absl::Status>> scripts_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, int> calls_ ABSL_GUARDED_BY(mutex_);
  std::string hold_ ABSL_GUARDED_BY(mutex_);
  bool held_ ABSL_GUARDED_BY(mutex_) = false;
};

// What the broker knows of the consumer.
struct ConsumerState {
  std::int64_t ack_pending = -1;
  std::int64_t redelivered = -1;
  std::uint64_t pending = 0;
};

class Fixture {
 public:
  explicit Fixture(server_kit::Engine engine)
      : broker_(broker_dir_.path()),
        database_(engine,
                  {{messaging::kInboxMigration, "CREATE TABLE effects (event_id TEXT)"},
                   {messaging::kPostgresInboxMigration, "CREATE TABLE effects (event_id TEXT)"}}) {
    const absl::Status started = broker_.Start();
    INFO(started.ToString());
    REQUIRE(started.ok());
    inbox_.emplace(*database_, handler_, base::SystemClock());
    messaging::NatsClientOptions client_options;
    client_options.url = broker_.url();
    client_options.name = "consumer-under-test";
    absl::StatusOr<std::unique_ptr<messaging::NatsClient>> client =
        messaging::NatsClient::Create(client_options, registry_);
    REQUIRE(client.ok());
    client_ = *std::move(client);
    // A short duplicate window, so that the broker stores a republished event and the consumer
    // sees the repeat.
    options_.stream.duplicate_window = absl::Milliseconds(100);
    options_.consumer.durable = kDurable;
    options_.consumer.ack_wait = kAckWait;
    options_.fetch_wait = absl::Milliseconds(100);
    REQUIRE(natsConnection_ConnectTo(&publishing_, broker_.url().c_str()) == NATS_OK);
    REQUIRE(natsConnection_JetStream(&jetstream_, publishing_, nullptr) == NATS_OK);
    REQUIRE(messaging::EnsureStream(jetstream_, options_.stream).ok());
    consumer_.emplace(*client_, *inbox_, nullptr, registry_, options_);
    consumer_->Start();
  }
  ~Fixture() {
    consumer_.reset();
    jsCtx_Destroy(jetstream_);
    natsConnection_Destroy(publishing_);
  }

  ScriptedHandler& handler() { return handler_; }
  messaging::Inbox& inbox() { return *inbox_; }

  void Publish(const std::string& event_id) {
    natsMsg* message = nullptr;
    const std::string payload = absl::StrCat("payload of ", event_id);
    REQUIRE(natsMsg_Create(&message, kSubject, nullptr, payload.data(),
                           static_cast<int>(payload.size())) == NATS_OK);
    REQUIRE(natsMsgHeader_Set(message, "Nats-Msg-Id", event_id.c_str()) == NATS_OK);
    jsPubAck* ack = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    const natsStatus status = js_PublishMsg(&ack, jetstream_, message, nullptr, &code);
    natsMsg_Destroy(message);
    REQUIRE(status == NATS_OK);
    REQUIRE_FALSE(ack->Duplicate);
    jsPubAck_Destroy(ack);
  }

  ConsumerState State() {
    jsConsumerInfo* info = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    REQUIRE(js_GetConsumerInfo(&info, jetstream_, options_.stream.name.c_str(), kDurable, nullptr,
                               &code) == NATS_OK);
    ConsumerState state{info->NumAckPending, info->NumRedelivered, info->NumPending};
    jsConsumerInfo_Destroy(info);
    return state;
  }
  // Waits until the broker has nothing left for the consumer: delivered and acknowledged.
  bool Settled() {
    return Eventually(
        [&] {
          const ConsumerState state = State();
          return state.ack_pending == 0 && state.pending == 0;
        },
        absl::Seconds(10));
  }

  int Effects(const std::string& event_id) {
    int count = -1;
    REQUIRE(database_
                ->WithSession([&](Database::Session& session) {
                  server_kit::Statement& select =
                      session.Prepare("SELECT COUNT(*) FROM effects WHERE event_id = ?1");
                  select.BindText(1, event_id);
                  absl::StatusOr<bool> row = select.Step();
                  if (!row.ok()) return row.status();
                  count = static_cast<int>(select.ColumnInt(0));
                  return absl::OkStatus();
                })
                .ok());
    return count;
  }
  double Consumed(const std::string& outcome) {
    return testing_support::MetricValue(registry_, "hospital_events_consumed_total",
                                        {{"consumer", kDurable}, {"outcome", outcome}});
  }

 private:
  testing_support::TempDir broker_dir_;
  testing_support::NatsServer broker_;
  prometheus::Registry registry_;
  testing_support::TestDatabase database_;
  ScriptedHandler handler_;
  std::optional<messaging::Inbox> inbox_;
  std::unique_ptr<messaging::NatsClient> client_;
  messaging::JetStreamConsumerOptions options_;
  natsConnection* publishing_ = nullptr;
  jsCtx* jetstream_ = nullptr;
  std::optional<messaging::JetStreamConsumer> consumer_;
};

TEMPLATE_TEST_CASE(
    "an event is acknowledged only after its effect commits, and a transient failure is "
    "redelivered and then applied",
    "[consumer]", SqliteEngine, PostgresEngine) {
  Fixture fixture(TestType::kEngine);
  fixture.handler().Script("e-1", {absl::UnavailableError("the database is busy")});
  fixture.handler().Hold("e-1");
  fixture.Publish("e-1");
  REQUIRE(fixture.handler().WaitUntilHeld(absl::Seconds(10)));
  // Delivered and being handled, nothing committed: the broker must still hold it unacknowledged
  // (an acknowledgement on receipt would lose it if the handling then failed).
  CHECK(fixture.State().ack_pending == 1);
  CHECK(fixture.Effects("e-1") == 0);
  fixture.handler().Release();
  // The first delivery failed transiently and was rolled back; the redelivery applies it.
  REQUIRE(Eventually([&] { return fixture.Effects("e-1") == 1; }, absl::Seconds(10)));
  CHECK(fixture.Settled());
  CHECK(fixture.handler().Calls("e-1") == 2);
  CHECK(fixture.State().redelivered == 0);  // Once acknowledged, no longer counted as such.
  CHECK(fixture.Consumed("retry") == 1);
  CHECK(fixture.Consumed("applied") == 1);
  CHECK(fixture.Effects("e-1") == 1);
}

TEMPLATE_TEST_CASE("a duplicate delivery is acknowledged and counted, with no second effect",
                   "[consumer]", SqliteEngine, PostgresEngine) {
  Fixture fixture(TestType::kEngine);
  fixture.Publish("e-2");
  REQUIRE(Eventually([&] { return fixture.Consumed("applied") == 1; }, absl::Seconds(10)));
  // Past the stream's duplicate window the broker stores the repeat as a new message.
  absl::SleepFor(absl::Milliseconds(200));
  fixture.Publish("e-2");
  REQUIRE(Eventually([&] { return fixture.Consumed("duplicate") == 1; }, absl::Seconds(10)));
  CHECK(fixture.Settled());
  // Left unacknowledged, the repeat would come back after the ack wait: wait that long and a
  // half, then nothing more may have arrived.
  absl::SleepFor(kAckWait * 1.5);
  const ConsumerState state = fixture.State();
  CHECK(state.ack_pending == 0);
  CHECK(state.redelivered == 0);
  CHECK(fixture.Consumed("duplicate") == 1);
  CHECK(fixture.handler().Calls("e-2") == 1);
  CHECK(fixture.Effects("e-2") == 1);
}

TEMPLATE_TEST_CASE("a poison event is terminated, recorded with its reason, and never redelivered",
                   "[consumer]", SqliteEngine, PostgresEngine) {
  Fixture fixture(TestType::kEngine);
  fixture.handler().Script("poison", {absl::InvalidArgumentError("payload: not a PatientDied")});
  fixture.Publish("poison");
  fixture.Publish("after-poison");
  REQUIRE(Eventually([&] { return fixture.Consumed("rejected") == 1; }, absl::Seconds(10)));
  // The consumer carries on with what follows.
  REQUIRE(Eventually([&] { return fixture.Effects("after-poison") == 1; }, absl::Seconds(10)));
  CHECK(fixture.Settled());
  // Negatively acknowledged instead of terminated, it would be delivered again at once, or
  // after the ack wait if merely left alone: wait that long and a half.
  absl::SleepFor(kAckWait * 1.5);
  const ConsumerState state = fixture.State();
  CHECK(state.ack_pending == 0);
  CHECK(state.redelivered == 0);
  CHECK(fixture.Consumed("rejected") == 1);
  CHECK(fixture.Consumed("duplicate") == 0);
  CHECK(fixture.handler().Calls("poison") == 1);
  CHECK(fixture.Effects("poison") == 0);  // Its savepoint was rolled back.
  const absl::StatusOr<messaging::RejectedEventPage> rejected =
      fixture.inbox().ListRejected("", 10);
  REQUIRE(rejected.ok());
  REQUIRE(rejected->items.size() == 1);
  CHECK(rejected->items[0].event_id() == "poison");
  CHECK(rejected->items[0].reason() == "payload: not a PatientDied");
  CHECK(rejected->items[0].deliveries() == 1);
}

}  // namespace
