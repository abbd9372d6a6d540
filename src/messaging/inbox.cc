#include "messaging/inbox.h"

#include <limits>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/crash_point.h"
#include "base/status.h"
#include "server_kit/rpc_support.h"

namespace messaging {
namespace {

using server_kit::Database;
using server_kit::Statement;

constexpr int kApplied = 1;
constexpr int kRejected = 2;
constexpr std::size_t kMaxStoredPayload = 4096;

absl::StatusOr<bool> AlreadyProcessed(Database::Session& session, const std::string& event_id) {
  Statement& select = session.Prepare("SELECT 1 FROM processed_events WHERE event_id = ?1");
  select.BindText(1, event_id);
  return select.Step();
}

absl::Status Record(Database::Session& session, const InboundEvent& event, int outcome,
                    const std::string& reason, absl::Time now) {
  Statement& insert = session.Prepare(
      "INSERT INTO processed_events (event_id, subject, stream_sequence, outcome, reason, "
      "payload, deliveries, process_time) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  insert.BindText(1, event.event_id);
  insert.BindText(2, event.subject);
  insert.BindInt(3, static_cast<std::int64_t>(event.stream_sequence));
  insert.BindInt(4, outcome);
  if (outcome == kRejected) {
    insert.BindText(5, reason);
    insert.BindBlob(6, absl::string_view(event.payload).substr(0, kMaxStoredPayload));
  }
  insert.BindInt(7, static_cast<std::int64_t>(event.deliveries));
  insert.BindTime(8, now);
  return insert.Run();
}

// Processes one event inside its own savepoint. An error returned means the savepoint itself
// failed and the transaction cannot go on.
absl::Status ProcessOne(Database::Session& session, EventHandler& handler,
                        const InboundEvent& event, absl::Time now, EventOutcome& outcome) {
  absl::StatusOr<bool> seen = AlreadyProcessed(session, event.event_id);
  if (!seen.ok()) {
    outcome = {Disposition::kRetry, seen.status()};
    return absl::OkStatus();
  }
  if (*seen) {
    outcome = {Disposition::kDuplicate, absl::OkStatus()};
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(session.Prepare("SAVEPOINT event").Run());
  absl::Status applied = handler.Apply(session, event, now);
  if (applied.ok()) applied = Record(session, event, kApplied, "", now);
  if (applied.ok()) {
    outcome = {Disposition::kApplied, absl::OkStatus()};
    return session.Prepare("RELEASE event").Run();
  }
  RETURN_IF_ERROR(session.Prepare("ROLLBACK TO event").Run());
  RETURN_IF_ERROR(session.Prepare("RELEASE event").Run());
  if (!IsPermanentFailure(applied)) {
    outcome = {Disposition::kRetry, applied};
    return absl::OkStatus();
  }
  if (absl::Status recorded =
          Record(session, event, kRejected, std::string(applied.message()), now);
      !recorded.ok()) {
    outcome = {Disposition::kRetry, recorded};
    return absl::OkStatus();
  }
  outcome = {Disposition::kRejected, applied};
  return absl::OkStatus();
}

}  // namespace

const char kInboxMigration[] = R"sql(
  -- Every event this service processed: applied (1) or rejected (2), with the reason and
  -- payload of a rejected one. Kept for good: it is what makes a late redelivery harmless.
  CREATE TABLE processed_events (
    event_id        TEXT PRIMARY KEY,
    subject         TEXT NOT NULL,
    stream_sequence INTEGER NOT NULL,
    outcome         INTEGER NOT NULL CHECK (outcome IN (1, 2)),
    reason          TEXT,
    payload         BLOB,
    deliveries      INTEGER NOT NULL,
    process_time    INTEGER NOT NULL
  );
  CREATE INDEX rejected_events ON processed_events (process_time, event_id) WHERE outcome = 2;
)sql";

const char kPostgresInboxMigration[] = R"sql(
  CREATE TABLE processed_events (
    event_id        TEXT COLLATE "C" PRIMARY KEY,
    subject         TEXT NOT NULL,
    stream_sequence BIGINT NOT NULL,
    outcome         INTEGER NOT NULL CHECK (outcome IN (1, 2)),
    reason          TEXT,
    payload         BYTEA,
    deliveries      BIGINT NOT NULL,
    process_time    BIGINT NOT NULL
  );
  CREATE INDEX rejected_events ON processed_events (process_time, event_id) WHERE outcome = 2;
)sql";

const char* DispositionName(Disposition disposition) {
  switch (disposition) {
    case Disposition::kApplied:
      return "applied";
    case Disposition::kDuplicate:
      return "duplicate";
    case Disposition::kRejected:
      return "rejected";
    case Disposition::kRetry:
      return "retry";
  }
  return "unknown";
}

bool IsPermanentFailure(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kUnimplemented:
      return true;
    default:
      return false;
  }
}

std::vector<EventOutcome> Inbox::Process(const std::vector<InboundEvent>& events) {
  std::vector<EventOutcome> outcomes(events.size());
  if (events.empty()) return outcomes;
  const absl::Time now = clock_.Now();
  absl::Status committed = database_.InTransaction([&](Database::Session& session) {
    for (std::size_t i = 0; i < events.size(); ++i) {
      RETURN_IF_ERROR(ProcessOne(session, handler_, events[i], now, outcomes[i]));
    }
    base::CrashPoint("inbox.applied");
    return absl::OkStatus();
  });
  if (!committed.ok()) {
    for (EventOutcome& outcome : outcomes) outcome = {Disposition::kRetry, committed};
  }
  return outcomes;
}

absl::StatusOr<RejectedEventPage> Inbox::ListRejected(const std::string& position, int limit) {
  // Position: "<process time in Unix microseconds>/<event id>" of the last item.
  std::int64_t after_time = std::numeric_limits<std::int64_t>::max();
  std::string after_id;
  if (!position.empty()) {
    std::pair<std::string, std::string> parts = absl::StrSplit(position, absl::MaxSplits('/', 1));
    if (!absl::SimpleAtoi(parts.first, &after_time) || parts.second.empty()) {
      return absl::InvalidArgumentError("page_token: not a token this method returned");
    }
    after_id = parts.second;
  }
  RejectedEventPage page;
  absl::Status status = database_.WithSession([&](Database::Session& session) -> absl::Status {
    Statement& select = session.Prepare(
        "SELECT event_id, subject, stream_sequence, reason, process_time, deliveries, payload "
        "FROM processed_events WHERE outcome = 2 AND (?4 = 0 OR process_time < ?1 OR "
        "(process_time = ?1 AND event_id < ?2)) ORDER BY process_time DESC, event_id DESC "
        "LIMIT ?3");
    select.BindInt(1, after_time);
    select.BindText(2, after_id);
    select.BindInt(4, position.empty() ? 0 : 1);
    ASSIGN_OR_RETURN(
        page, server_kit::ReadPage<hospital::messaging::v1::RejectedEvent>(
                  select, 3, limit,
                  [](const Statement& row) {
                    hospital::messaging::v1::RejectedEvent event;
                    event.set_event_id(row.ColumnText(0));
                    event.set_subject(row.ColumnText(1));
                    event.set_stream_sequence(static_cast<std::uint64_t>(row.ColumnInt(2)));
                    event.set_reason(row.ColumnText(3));
                    *event.mutable_reject_time() = server_kit::ToProtoTime(row.ColumnTime(4));
                    event.set_deliveries(static_cast<std::uint64_t>(row.ColumnInt(5)));
                    event.set_payload(row.ColumnBlob(6));
                    return event;
                  },
                  [](const hospital::messaging::v1::RejectedEvent& last) {
                    return absl::StrCat(
                        absl::ToUnixMicros(server_kit::FromProtoTime(last.reject_time())), "/",
                        last.event_id());
                  }));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return page;
}

}  // namespace messaging
