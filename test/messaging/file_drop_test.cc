// The file drop on a temporary directory and database, with a handler that writes one effect row
// per event: files appear whole, are applied once per consumer (again after a lost marker, as
// duplicates), a damaged or cut-short file is set aside and never applied in part, a transient
// failure leaves the file for the next pass, injected faults hold or slow the consumer as they
// would an RPC, and clean-up waits for every consumer.
#include <sys/inotify.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <prometheus/registry.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/testing/fake_environment.h"
#include "integration/file_drop/file_drop.h"
#include "server_kit/sqlite.h"
#include "testing_support/metrics_reader.h"
#include "testing_support/service_process.h"

namespace {

using integration::file_drop::FileDropConsumer;
using messaging::PendingEvent;
using server_kit::Database;

class EffectHandler final : public messaging::EventHandler {
 public:
  absl::Status Apply(Database::Session& session, const messaging::InboundEvent& event,
                     absl::Time /*now*/) override {
    if (!failure.ok()) return failure;
    server_kit::Statement& insert =
        session.Prepare("INSERT INTO effects (event_id, payload) VALUES (?1, ?2)");
    insert.BindText(1, event.event_id);
    insert.BindText(2, event.payload);
    return insert.Run();
  }
  absl::Status failure;
};

PendingEvent Pending(std::int64_t sequence) {
  PendingEvent pending;
  pending.sequence = sequence;
  pending.event.event_id = absl::StrCat("e-", sequence);
  pending.event.subject = "hospital.patients.v1.patient_died";
  pending.event.event_type = "hospital.patients.v1.PatientDied";
  pending.event.payload = absl::StrCat("payload ", sequence);
  return pending;
}

constexpr char kFaultMethod[] = "/hospital.morgue.v1.MorgueService/HandlePatientDied";

struct Fixture {
  Fixture() {
    drop = dir.path() + "/drop";
    std::filesystem::create_directories(drop);
    absl::StatusOr<std::unique_ptr<Database>> opened = server_kit::SqliteDatabase::Open(
        dir.path() + "/consumer.db",
        {messaging::kInboxMigration, "CREATE TABLE effects (event_id TEXT, payload TEXT)"});
    REQUIRE(opened.ok());
    database = *std::move(opened);
    inbox.emplace(*database, handler, clock);
    consumer.emplace(*inbox, registry,
                     integration::file_drop::FileDropConsumerOptions{
                         drop, "morgue", absl::Seconds(1), &faults, kFaultMethod});
  }
  // Writes a file of events `first`..`last` as the producer does.
  void Produce(std::int64_t first, std::int64_t last) {
    std::vector<PendingEvent> events;
    for (std::int64_t s = first; s <= last; ++s) events.push_back(Pending(s));
    integration::file_drop::FileDropPublisher publisher(drop, clock);
    for (const absl::Status& status : publisher.Publish(events)) REQUIRE(status.ok());
  }
  int Effects() {
    int count = 0;
    REQUIRE(database
                ->WithSession([&](Database::Session& session) {
                  server_kit::Statement& select = session.Prepare("SELECT COUNT(*) FROM effects");
                  absl::StatusOr<bool> row = select.Step();
                  if (!row.ok()) return row.status();
                  count = static_cast<int>(select.ColumnInt(0));
                  return absl::OkStatus();
                })
                .ok());
    return count;
  }
  std::vector<std::string> Files(const std::string& in) {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(in)) {
      if (entry.is_regular_file()) names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  testing_support::TempDir dir;
  std::string drop;
  std::unique_ptr<Database> database;
  EffectHandler handler;
  base::testing::FakeClock clock;
  prometheus::Registry registry;
  base::testing::FakeEnvironment environment;
  server_kit::FaultInjector faults{environment.environment(), registry};
  std::optional<messaging::Inbox> inbox;
  std::optional<FileDropConsumer> consumer;
};

TEST_CASE("an event file decodes to what was encoded, and any damage is found", "[file_drop]") {
  base::testing::FakeClock clock;
  const std::string bytes =
      integration::file_drop::EncodeEventFile({Pending(1), Pending(2)}, clock.Now());
  absl::StatusOr<std::vector<messaging::InboundEvent>> events =
      integration::file_drop::DecodeEventFile(bytes);
  REQUIRE(events.ok());
  REQUIRE(events->size() == 2);
  CHECK((*events)[1].event_id == "e-2");
  CHECK((*events)[1].payload == "payload 2");
  // Every single flipped byte and every cut is refused as DATA_LOSS.
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    std::string damaged = bytes;
    damaged[i] = static_cast<char>(damaged[i] ^ 0x40);
    INFO("byte " << i);
    CHECK(integration::file_drop::DecodeEventFile(damaged).status().code() ==
          absl::StatusCode::kDataLoss);
  }
  for (std::size_t length = 0; length < bytes.size(); ++length) {
    INFO("cut at " << length);
    CHECK(integration::file_drop::DecodeEventFile(bytes.substr(0, length)).status().code() ==
          absl::StatusCode::kDataLoss);
  }
}

TEST_CASE("files are applied once each, in order, and a lost marker brings only duplicates",
          "[file_drop]") {
  Fixture f;
  f.Produce(1, 3);
  f.Produce(4, 5);
  REQUIRE(f.consumer->RunOnce().ok());
  CHECK(f.Effects() == 5);
  const std::vector<std::string> files = f.Files(f.drop);
  REQUIRE(files.size() == 4);  // Two files, two markers.
  CHECK(files[0] == "events-00000000000000000001-00000000000000000003.evt");
  CHECK(files[1] == "events-00000000000000000001-00000000000000000003.evt.done-morgue");
  // A second pass finds nothing new.
  REQUIRE(f.consumer->RunOnce().ok());
  CHECK(f.Effects() == 5);
  // A crash between a file's commit and its marker: the file is read again, every event a
  // duplicate.
  std::filesystem::remove(f.drop + "/" + files[1]);
  REQUIRE(f.consumer->RunOnce().ok());
  CHECK(f.Effects() == 5);
  CHECK(std::filesystem::exists(f.drop + "/" + files[1]));
}

TEST_CASE("a damaged file is set aside with its reason and none of it is applied", "[file_drop]") {
  Fixture f;
  f.Produce(1, 2);
  const std::string name = f.Files(f.drop).front();
  {
    // Damage the last event's payload on disk.
    std::ifstream in(f.drop + "/" + name, std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    std::string damaged = bytes.str();
    damaged[damaged.size() - 10] = static_cast<char>(damaged[damaged.size() - 10] ^ 1);
    std::ofstream(f.drop + "/" + name, std::ios::binary | std::ios::trunc) << damaged;
  }
  f.Produce(3, 3);
  REQUIRE(f.consumer->RunOnce().ok());
  CHECK(f.Effects() == 1);  // The good file only.
  CHECK(f.Files(f.dir.path() + "/drop/rejected") ==
        std::vector<std::string>{name, name + ".reason"});
  std::ifstream reason(f.drop + "/rejected/" + name + ".reason");
  std::stringstream text;
  text << reason.rdbuf();
  CHECK_THAT(text.str(), Catch::Contains("morgue: checksum mismatch"));
}

TEST_CASE("a transient failure leaves the file, and what follows it, for the next pass",
          "[file_drop]") {
  Fixture f;
  f.Produce(1, 2);
  f.Produce(3, 4);
  f.handler.failure = absl::UnavailableError("database is locked");
  CHECK(f.consumer->RunOnce().code() == absl::StatusCode::kUnavailable);
  CHECK(f.Effects() == 0);
  CHECK(f.Files(f.drop).size() == 2);  // No marker.
  f.handler.failure = absl::OkStatus();
  REQUIRE(f.consumer->RunOnce().ok());
  CHECK(f.Effects() == 4);
}

TEST_CASE("an injected outage holds the consumer at its file, and a delay slows each event",
          "[file_drop]") {
  Fixture f;
  f.Produce(1, 3);
  hospital::faults::v1::Fault outage;
  outage.set_id("down");
  outage.set_method("hospital.morgue.v1.MorgueService/*");
  outage.mutable_abort()->set_code("UNAVAILABLE");
  REQUIRE(f.faults.Set(outage).ok());
  CHECK(f.consumer->RunOnce().code() == absl::StatusCode::kUnavailable);
  CHECK(f.Effects() == 0);
  CHECK(f.Files(f.drop).size() == 1);  // No marker.
  f.faults.Clear("down");

  hospital::faults::v1::Fault slow;
  slow.set_method("hospital.morgue.v1.MorgueService/HandlePatientDied");
  slow.mutable_delay()->mutable_fixed()->set_nanos(20'000'000);
  REQUIRE(f.faults.Set(slow).ok());
  const absl::Time began = absl::Now();
  REQUIRE(f.consumer->RunOnce().ok());
  CHECK(absl::Now() - began >= absl::Milliseconds(60));  // 20 ms for each of the three events.
  CHECK(f.Effects() == 3);
}

// Every name that appeared in `directory` while the watch ran, with how: created or written
// in place, or renamed into it.
class DirectoryWatch final {
 public:
  explicit DirectoryWatch(const std::string& directory)
      : fd_(inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
    REQUIRE(fd_ >= 0);
    REQUIRE(inotify_add_watch(fd_, directory.c_str(), IN_CREATE | IN_MODIFY | IN_MOVED_TO) >= 0);
  }
  ~DirectoryWatch() { close(fd_); }

  struct Seen {
    std::set<std::string> written_in_place;  // IN_CREATE or IN_MODIFY
    std::set<std::string> renamed_into;      // IN_MOVED_TO
  };
  // Reads what has queued up so far.
  Seen Read() {
    alignas(inotify_event) char buffer[64 * 1024];
    while (true) {
      const ssize_t length = read(fd_, buffer, sizeof buffer);
      if (length <= 0) break;
      for (ssize_t at = 0; at < length;) {
        const auto* event = reinterpret_cast<const inotify_event*>(buffer + at);
        if (event->len > 0) {
          const std::string name(event->name);
          if (event->mask & (IN_CREATE | IN_MODIFY)) seen_.written_in_place.insert(name);
          if (event->mask & IN_MOVED_TO) seen_.renamed_into.insert(name);
        }
        at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      }
    }
    return seen_;
  }

 private:
  const int fd_;
  Seen seen_;
};

TEST_CASE("a consumer polling while a large file is written never reads it in part",
          "[file_drop]") {
  Fixture f;
  DirectoryWatch watch(f.drop);
  // About 24 MiB: writing and syncing it takes long enough for many passes of the consumer.
  constexpr int kEvents = 12000;
  std::vector<PendingEvent> events;
  for (int s = 1; s <= kEvents; ++s) {
    events.push_back(Pending(s));
    events.back().event.payload = std::string(2048, static_cast<char>('a' + s % 26));
  }
  std::atomic<bool> written{false};
  std::vector<absl::Status> results;
  std::thread producer([&] {
    integration::file_drop::FileDropPublisher publisher(f.drop, f.clock);
    results = publisher.Publish(events);
    written.store(true);
  });
  int passes = 0;
  bool every_pass_ok = true;
  while (!written.load()) {
    every_pass_ok = f.consumer->RunOnce().ok() && every_pass_ok;
    ++passes;
  }
  producer.join();
  CHECK(every_pass_ok);
  CHECK(std::all_of(results.begin(), results.end(), [](const auto& s) { return s.ok(); }));
  REQUIRE(f.consumer->RunOnce().ok());
  INFO(passes << " passes while the file was written");
  CHECK(passes > 1);
  // Had a pass read the file before it was whole, it would have found its length or checksum
  // wrong and set it aside.
  CHECK_FALSE(std::filesystem::exists(f.drop + "/rejected"));
  CHECK(testing_support::MetricValue(f.registry, "hospital_file_drop_files_total",
                                     {{"consumer", "morgue"}, {"outcome", "applied"}}) == 1);
  CHECK(f.Effects() == kEvents);
  // However the passes fell, a name the consumer takes only ever appeared whole, by rename.
  const DirectoryWatch::Seen seen = watch.Read();
  std::vector<std::string> taken_names_written;
  for (const std::string& name : seen.written_in_place) {
    if (absl::EndsWith(name, ".evt")) taken_names_written.push_back(name);
  }
  CHECK(taken_names_written.empty());
  CHECK(std::count_if(seen.renamed_into.begin(), seen.renamed_into.end(),
                      [](const auto& name) { return absl::EndsWith(name, ".evt"); }) == 1);
}

TEST_CASE("a file is cleaned up once every consumer has marked it", "[file_drop]") {
  Fixture f;
  f.Produce(1, 1);
  REQUIRE(f.consumer->RunOnce().ok());
  const std::vector<std::string> consumers = {"morgue", "appointments"};
  CHECK(*integration::file_drop::RemoveConsumedFiles(f.drop, consumers) == 0);
  CHECK(f.Files(f.drop).size() == 2);
  const std::string name = f.Files(f.drop).front();
  REQUIRE(integration::file_drop::WriteFileDurably(f.drop, name + ".done-appointments", "").ok());
  CHECK(*integration::file_drop::RemoveConsumedFiles(f.drop, consumers) == 1);
  CHECK(f.Files(f.drop).empty());
}

}  // namespace
