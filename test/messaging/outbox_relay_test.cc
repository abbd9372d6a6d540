// The outbox and its relay on a fresh database of each engine, with a scripted publisher and a fake
// clock: what is marked published, in which order, what is retried, what is pruned.
#include <catch2/catch.hpp>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/sync.h"
#include "base/testing/fake_environment.h"
#include "messaging/outbox.h"
#include "messaging/outbox_relay.h"
#include "server_kit/database.h"
#include "support/test_database.h"

namespace {

using messaging::OutboxEvent;
using messaging::OutboxRelay;
using messaging::OutboxStore;
using messaging::PendingEvent;
using server_kit::Database;
using testing_support::PostgresEngine;
using testing_support::SqliteEngine;

// Records what it is asked to publish; answers OK unless told otherwise for an event id.
class ScriptedPublisher final : public messaging::EventPublisher {
 public:
  // Runs at the start of every Publish (with no lock held).
  std::function<void()> during_publish;

  std::vector<absl::Status> Publish(const std::vector<PendingEvent>& events) override {
    if (during_publish) during_publish();
    base::MutexLock lock(&mutex_);
    std::vector<absl::Status> results;
    for (const PendingEvent& pending : events) {
      sent_.push_back(pending.event.event_id);
      const auto failure = failures_.find(pending.event.event_id);
      results.push_back(failure == failures_.end() ? absl::OkStatus() : failure->second);
    }
    return results;
  }
  void FailFor(const std::string& event_id, absl::Status status) {
    base::MutexLock lock(&mutex_);
    failures_[event_id] = std::move(status);
  }
  void Heal() {
    base::MutexLock lock(&mutex_);
    failures_.clear();
  }
  std::vector<std::string> TakeSent() {
    base::MutexLock lock(&mutex_);
    return std::exchange(sent_, {});
  }

 private:
  base::Mutex mutex_;
  std::vector<std::string> sent_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, absl::Status> failures_ ABSL_GUARDED_BY(mutex_);
};

struct Fixture {
  explicit Fixture(server_kit::Engine engine)
      : database(engine, {{messaging::kOutboxMigration},
                          {messaging::kPostgresOutboxMigration,
                           messaging::kPostgresOutboxClaimMigration}}) {
    store.emplace(*database);
  }
  // Commits events "e-<first>" .. "e-<last>", one transaction each, of patient "p-<i>".
  void Commit(int first, int last) {
    for (int i = first; i <= last; ++i) CommitFor(i, absl::StrCat("p-", i));
  }
  // Commits event "e-<i>" of patient `aggregate_id`.
  void CommitFor(int i, const std::string& aggregate_id) {
    const OutboxEvent event{
        absl::StrCat("e-", i),    "patient", aggregate_id, "hospital.patients.v1.PatientDied",
        "hospital.patients.v1.x", "payload"};
    REQUIRE(database
                ->InTransaction([&](Database::Session& session) {
                  return messaging::AppendToOutbox(session, event, clock.Now());
                })
                .ok());
  }
  int Unpublished() { return static_cast<int>(store->Stats()->unpublished); }

  testing_support::TestDatabase database;
  std::optional<OutboxStore> store;  // Over `database`, once open.
  base::testing::FakeClock clock;
  ScriptedPublisher publisher;
  prometheus::Registry metrics;
};

std::vector<std::string> Ids(int first, int last) {
  std::vector<std::string> ids;
  for (int i = first; i <= last; ++i) ids.push_back(absl::StrCat("e-", i));
  return ids;
}

TEMPLATE_TEST_CASE("the relay publishes in commit order and marks what the broker acknowledged",
                   "[outbox]", SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  OutboxRelay relay(*f.store, f.publisher, f.clock, f.metrics);
  f.Commit(1, 5);
  const messaging::RelayPass pass = relay.RelayOnce();
  CHECK(pass.published == 5);
  CHECK(pass.failed == 0);
  CHECK_FALSE(pass.more);
  CHECK(f.publisher.TakeSent() == Ids(1, 5));
  CHECK(f.Unpublished() == 0);
  // Nothing is published twice.
  CHECK(relay.RelayOnce().published == 0);
  CHECK(f.publisher.TakeSent().empty());
}

TEMPLATE_TEST_CASE(
    "an event the broker did not acknowledge is published again, the acknowledged ones are not",
    "[outbox]", SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  OutboxRelay relay(*f.store, f.publisher, f.clock, f.metrics);
  f.Commit(1, 5);
  f.publisher.FailFor("e-3", absl::UnavailableError("broker down"));
  const messaging::RelayPass failed = relay.RelayOnce();
  CHECK(failed.published == 4);
  CHECK(failed.failed == 1);
  CHECK(failed.error.code() == absl::StatusCode::kUnavailable);
  CHECK(f.Unpublished() == 1);
  f.publisher.TakeSent();
  f.publisher.Heal();
  CHECK(relay.RelayOnce().published == 1);
  CHECK(f.publisher.TakeSent() == Ids(3, 3));
  CHECK(f.Unpublished() == 0);
}

TEMPLATE_TEST_CASE("a full batch asks for another pass at once", "[outbox]", SqliteEngine,
                   PostgresEngine) {
  Fixture f(TestType::kEngine);
  messaging::OutboxRelayOptions options;
  options.batch_size = 4;
  OutboxRelay relay(*f.store, f.publisher, f.clock, f.metrics, options);
  f.Commit(1, 10);
  messaging::RelayPass pass = relay.RelayOnce();
  CHECK(pass.published == 4);
  CHECK(pass.more);
  CHECK(relay.RelayOnce().more);
  pass = relay.RelayOnce();
  CHECK(pass.published == 2);
  CHECK_FALSE(pass.more);
  CHECK(f.publisher.TakeSent() == Ids(1, 10));
}

TEMPLATE_TEST_CASE("published events are pruned after the retention, unpublished ones never",
                   "[outbox]", SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  messaging::OutboxRelayOptions options;
  options.retention = absl::Minutes(1);
  OutboxRelay relay(*f.store, f.publisher, f.clock, f.metrics, options);
  f.Commit(1, 3);
  REQUIRE(relay.RelayOnce().published == 3);
  f.clock.Set(f.clock.Now() + absl::Seconds(30));
  f.publisher.FailFor("e-4", absl::UnavailableError("down"));
  f.Commit(4, 4);
  relay.RelayOnce();
  CHECK(*relay.PruneOnce() == 0);  // Published 30 s ago: kept.
  f.clock.Set(f.clock.Now() + absl::Minutes(5));
  CHECK(*relay.PruneOnce() == 3);
  CHECK(f.Unpublished() == 1);  // e-4, five minutes old and unpublished, stays.
}

TEMPLATE_TEST_CASE("events published since a moment can be marked for publishing again", "[outbox]",
                   SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  OutboxRelay relay(*f.store, f.publisher, f.clock, f.metrics);
  f.Commit(1, 2);
  REQUIRE(relay.RelayOnce().published == 2);
  const absl::Time between = f.clock.Now() + absl::Seconds(30);
  f.clock.Set(f.clock.Now() + absl::Minutes(1));
  f.Commit(3, 4);
  REQUIRE(relay.RelayOnce().published == 2);
  f.publisher.TakeSent();
  CHECK(*f.store->MarkUnpublishedSince(between) == 2);
  CHECK(relay.RelayOnce().published == 2);
  CHECK(f.publisher.TakeSent() == Ids(3, 4));
}

TEMPLATE_TEST_CASE("the gauges show the outbox depth and the age of its oldest event", "[outbox]",
                   SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  OutboxRelay relay(*f.store, f.publisher, f.clock, f.metrics);
  f.Commit(1, 2);
  f.clock.Set(f.clock.Now() + absl::Seconds(7));
  relay.UpdateGauges();
  auto value = [&](const std::string& name) {
    for (const auto& family : f.metrics.Collect()) {
      if (family.name == name) return family.metric.at(0).gauge.value;
    }
    return -1.0;
  };
  CHECK(value("hospital_outbox_unpublished") == 2);
  CHECK(value("hospital_outbox_oldest_unpublished_age_seconds") == 7);
  relay.RelayOnce();
  relay.UpdateGauges();
  CHECK(value("hospital_outbox_unpublished") == 0);
  CHECK(value("hospital_outbox_oldest_unpublished_age_seconds") == 0);
}

TEMPLATE_TEST_CASE("the relay's thread publishes what Notify announces and stops cleanly",
                   "[outbox]", SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  messaging::OutboxRelayOptions options;
  options.idle_poll = absl::Hours(1);  // Only Notify can wake it after the first pass.
  OutboxRelay relay(*f.store, f.publisher, f.clock, f.metrics, options);
  relay.Start();
  f.Commit(1, 3);
  relay.Notify();
  for (int i = 0; i < 500 && f.Unpublished() != 0; ++i) absl::SleepFor(absl::Milliseconds(10));
  CHECK(f.Unpublished() == 0);
  relay.Stop();
  relay.Stop();  // Idempotent.
}

TEST_CASE(
    "relays of several replicas never publish one event at once, and one aggregate's events "
    "leave in order",
    "[outbox]") {
  Fixture f(server_kit::Engine::kPostgres);
  messaging::OutboxRelayOptions options;
  options.batch_size = 2;
  OutboxRelay relay_a(*f.store, f.publisher, f.clock, f.metrics, options);
  ScriptedPublisher publisher_b;
  prometheus::Registry metrics_b;
  OutboxRelay relay_b(*f.store, publisher_b, f.clock, metrics_b, options);
  f.CommitFor(1, "p-1");
  f.CommitFor(2, "p-2");
  f.CommitFor(3, "p-1");  // The second event of p-1.
  f.CommitFor(4, "p-3");
  // While A publishes its batch (e-1, e-2), B passes: it skips what A holds, and e-3 too, whose
  // aggregate's first event A has not published yet.
  messaging::RelayPass pass_b;
  bool b_passed = false;
  f.publisher.during_publish = [&] {
    if (std::exchange(b_passed, true)) return;
    pass_b = relay_b.RelayOnce();
  };
  const messaging::RelayPass pass_a = relay_a.RelayOnce();
  CHECK(pass_a.published == 2);
  CHECK(pass_b.published == 1);
  CHECK(f.publisher.TakeSent() == Ids(1, 2));
  CHECK(publisher_b.TakeSent() == Ids(4, 4));
  // Now that e-1 is out, e-3 may follow, by whichever relay.
  CHECK(relay_b.RelayOnce().published == 1);
  CHECK(publisher_b.TakeSent() == Ids(3, 3));
  CHECK(f.Unpublished() == 0);
}

TEST_CASE("claiming events needs PostgreSQL: on SQLite the one relay reads and marks", "[outbox]") {
  Fixture f(server_kit::Engine::kSqlite);
  CHECK_FALSE(f.store->supports_claims());
  f.Commit(1, 1);
  bool published = false;
  absl::StatusOr<int> claimed = f.store->PublishClaimed(
      10,
      [&](const std::vector<PendingEvent>&) {
        published = true;
        return std::vector<std::int64_t>{};
      },
      [&] { return f.clock.Now(); });
  CHECK(claimed.status().code() == absl::StatusCode::kUnimplemented);
  CHECK_FALSE(published);
  CHECK(f.Unpublished() == 1);
}

}  // namespace
