// The inbox on a fresh database of each engine with a scripted handler: each event's effect and its
// record commit together; duplicates, permanent and transient failures; listing rejected events.
#include <catch2/catch.hpp>

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/sync.h"
#include "base/testing/fake_environment.h"
#include "messaging/inbox.h"
#include "server_kit/database.h"
#include "support/test_database.h"

namespace {

using messaging::Disposition;
using messaging::InboundEvent;
using server_kit::Database;
using testing_support::PostgresEngine;
using testing_support::SqliteEngine;

// Writes an effect row for each event, then fails if told to for that event id (so a failure
// must roll the effect back).
class ScriptedHandler final : public messaging::EventHandler {
 public:
  absl::Status Apply(Database::Session& session, const InboundEvent& event,
                     absl::Time /*now*/) override {
    server_kit::Statement& insert = session.Prepare("INSERT INTO effects (event_id) VALUES (?1)");
    insert.BindText(1, event.event_id);
    if (absl::Status inserted = insert.Run(); !inserted.ok()) return inserted;
    if (on_apply) on_apply();
    const auto failure = failures.find(event.event_id);
    return failure == failures.end() ? absl::OkStatus() : failure->second;
  }
  std::map<std::string, absl::Status> failures;
  // Runs in every Apply, after the effect is written.
  std::function<void()> on_apply;
};

struct Fixture {
  explicit Fixture(server_kit::Engine engine)
      : database(engine,
                 {{messaging::kInboxMigration, "CREATE TABLE effects (event_id TEXT)"},
                  {messaging::kPostgresInboxMigration, "CREATE TABLE effects (event_id TEXT)"}}) {
    inbox.emplace(*database, handler, clock);
  }
  int Effects(const std::string& event_id) {
    int count = 0;
    REQUIRE(database
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

  testing_support::TestDatabase database;
  ScriptedHandler handler;
  base::testing::FakeClock clock;
  std::optional<messaging::Inbox> inbox;  // Over `database`, once open.
};

InboundEvent Event(const std::string& id, std::uint64_t sequence = 1) {
  InboundEvent event;
  event.event_id = id;
  event.subject = "hospital.patients.v1.patient_died";
  event.payload = absl::StrCat("payload of ", id);
  event.stream_sequence = sequence;
  return event;
}

std::vector<Disposition> Dispositions(const std::vector<messaging::EventOutcome>& outcomes) {
  std::vector<Disposition> dispositions;
  for (const auto& outcome : outcomes) dispositions.push_back(outcome.disposition);
  return dispositions;
}

TEMPLATE_TEST_CASE("an event is applied once: a redelivery, even much later, is a duplicate",
                   "[inbox]", SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  CHECK(Dispositions(f.inbox->Process({Event("e-1")})) ==
        std::vector<Disposition>{Disposition::kApplied});
  f.clock.Set(f.clock.Now() + absl::Hours(24 * 30));  // Far beyond any broker dedup window.
  CHECK(Dispositions(f.inbox->Process({Event("e-1")})) ==
        std::vector<Disposition>{Disposition::kDuplicate});
  CHECK(f.Effects("e-1") == 1);
}

TEMPLATE_TEST_CASE("the same event twice in one batch has one effect", "[inbox]", SqliteEngine,
                   PostgresEngine) {
  Fixture f(TestType::kEngine);
  CHECK(Dispositions(f.inbox->Process({Event("e-1"), Event("e-1")})) ==
        std::vector<Disposition>{Disposition::kApplied, Disposition::kDuplicate});
  CHECK(f.Effects("e-1") == 1);
}

TEMPLATE_TEST_CASE("in a batch, a failing event is rolled back alone", "[inbox]", SqliteEngine,
                   PostgresEngine) {
  Fixture f(TestType::kEngine);
  f.handler.failures["e-2"] = absl::InvalidArgumentError("cause: empty");
  f.handler.failures["e-3"] = absl::UnavailableError("database is busy");
  const std::vector<messaging::EventOutcome> outcomes =
      f.inbox->Process({Event("e-1"), Event("e-2"), Event("e-3"), Event("e-4")});
  CHECK(Dispositions(outcomes) ==
        std::vector<Disposition>{Disposition::kApplied, Disposition::kRejected, Disposition::kRetry,
                                 Disposition::kApplied});
  CHECK(outcomes[1].status.message() == "cause: empty");
  CHECK(outcomes[2].status.code() == absl::StatusCode::kUnavailable);
  CHECK(f.Effects("e-1") == 1);
  CHECK(f.Effects("e-2") == 0);  // Its effect was written, then rolled back.
  CHECK(f.Effects("e-3") == 0);
  CHECK(f.Effects("e-4") == 1);
}

TEMPLATE_TEST_CASE("a transient failure records nothing, so the redelivery applies it", "[inbox]",
                   SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  f.handler.failures["e-1"] = absl::AbortedError("injected");
  CHECK(Dispositions(f.inbox->Process({Event("e-1")})) ==
        std::vector<Disposition>{Disposition::kRetry});
  f.handler.failures.clear();
  CHECK(Dispositions(f.inbox->Process({Event("e-1")})) ==
        std::vector<Disposition>{Disposition::kApplied});
  CHECK(f.Effects("e-1") == 1);
}

TEMPLATE_TEST_CASE("a rejected event stays rejected: its redelivery is not applied", "[inbox]",
                   SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  f.handler.failures["e-1"] = absl::FailedPreconditionError("contradicts the data");
  CHECK(Dispositions(f.inbox->Process({Event("e-1")})) ==
        std::vector<Disposition>{Disposition::kRejected});
  f.handler.failures.clear();
  CHECK(Dispositions(f.inbox->Process({Event("e-1")})) ==
        std::vector<Disposition>{Disposition::kDuplicate});
  CHECK(f.Effects("e-1") == 0);
}

TEST_CASE("which failures are permanent", "[inbox]") {
  for (const absl::Status& permanent :
       {absl::InvalidArgumentError(""), absl::FailedPreconditionError(""), absl::NotFoundError(""),
        absl::AlreadyExistsError(""), absl::OutOfRangeError(""), absl::UnimplementedError("")}) {
    CHECK(messaging::IsPermanentFailure(permanent));
  }
  for (const absl::Status& transient :
       {absl::UnavailableError(""), absl::AbortedError(""), absl::ResourceExhaustedError(""),
        absl::DeadlineExceededError(""), absl::InternalError(""), absl::DataLossError(""),
        absl::CancelledError(""), absl::UnknownError("")}) {
    CHECK_FALSE(messaging::IsPermanentFailure(transient));
  }
}

TEMPLATE_TEST_CASE("rejected events are listed most recent first, a page at a time", "[inbox]",
                   SqliteEngine, PostgresEngine) {
  Fixture f(TestType::kEngine);
  for (int i = 1; i <= 5; ++i) {
    const std::string id = absl::StrCat("e-", i);
    f.handler.failures[id] = absl::InvalidArgumentError(absl::StrCat("reason ", i));
    InboundEvent event = Event(id, static_cast<std::uint64_t>(i));
    event.deliveries = 2;
    f.inbox->Process({event});
    f.clock.Set(f.clock.Now() + absl::Seconds(1));
  }
  f.inbox->Process({Event("applied-one")});  // Not listed.
  std::vector<std::string> listed;
  std::string position;
  int pages = 0;
  do {
    absl::StatusOr<messaging::RejectedEventPage> page = f.inbox->ListRejected(position, 2);
    REQUIRE(page.ok());
    for (const auto& event : page->items) {
      listed.push_back(event.event_id());
      CHECK(event.reason() == absl::StrCat("reason ", event.stream_sequence()));
      CHECK(event.deliveries() == 2);
      CHECK(event.payload() == absl::StrCat("payload of ", event.event_id()));
    }
    position = page->next_position;
    ++pages;
  } while (!position.empty());
  CHECK(listed == std::vector<std::string>{"e-5", "e-4", "e-3", "e-2", "e-1"});
  CHECK(pages == 3);
  CHECK(f.inbox->ListRejected("garbage", 2).status().code() == absl::StatusCode::kInvalidArgument);
}

TEMPLATE_TEST_CASE("a payload is stored for operators up to 4 KiB", "[inbox]", SqliteEngine,
                   PostgresEngine) {
  Fixture f(TestType::kEngine);
  InboundEvent big = Event("big");
  big.payload = std::string(10000, 'x');
  f.handler.failures["big"] = absl::InvalidArgumentError("too big to apply");
  f.inbox->Process({big});
  absl::StatusOr<messaging::RejectedEventPage> page = f.inbox->ListRejected("", 10);
  REQUIRE(page.ok());
  REQUIRE(page->items.size() == 1);
  CHECK(page->items[0].payload().size() == 4096);
}

// Two replicas of a consumer share one durable consumer and one database: after an AckWait the
// broker may hand the event to the second while the first is still applying it.
TEST_CASE("replicas applying one event at the same time: one effect, the other no second one",
          "[inbox]") {
  Fixture f(server_kit::Engine::kPostgres);  // Replicas share a database only on PostgreSQL.
  ScriptedHandler other_handler;
  messaging::Inbox other_replica(*f.database, other_handler, f.clock);
  // Each replica's first Apply waits (up to 5 s) until both are inside theirs, neither
  // committed: both found the event unprocessed.
  base::Mutex mutex;
  base::CondVar entered;
  int inside = 0;
  bool waited_out = false;
  auto meet = [&] {
    base::MutexLock lock(&mutex);
    if (++inside > 2) return;  // A rerun of a unit: the other has committed by now.
    entered.SignalAll();
    const absl::Time give_up = absl::Now() + absl::Seconds(5);
    while (inside < 2) {
      if (entered.WaitWithDeadline(&mutex, give_up)) {
        waited_out = true;
        return;
      }
    }
  };
  f.handler.on_apply = meet;
  other_handler.on_apply = meet;
  std::vector<messaging::EventOutcome> first;
  std::vector<messaging::EventOutcome> second;
  std::thread replica_a([&] { first = f.inbox->Process({Event("e-1")}); });
  std::thread replica_b([&] { second = other_replica.Process({Event("e-1")}); });
  replica_a.join();
  replica_b.join();
  CHECK_FALSE(waited_out);
  REQUIRE(first.size() == 1);
  REQUIRE(second.size() == 1);
  const std::vector<Disposition> both = {first[0].disposition, second[0].disposition};
  // One applied it; the other found it applied (its unit run again after the serialization
  // failure) or, at worst, is told to have it redelivered; never applied twice, never rejected.
  CHECK(std::count(both.begin(), both.end(), Disposition::kApplied) == 1);
  CHECK(std::count(both.begin(), both.end(), Disposition::kRejected) == 0);
  CHECK(f.Effects("e-1") == 1);
  f.handler.on_apply = nullptr;
  CHECK(Dispositions(f.inbox->Process({Event("e-1")})) ==
        std::vector<Disposition>{Disposition::kDuplicate});
}

}  // namespace
