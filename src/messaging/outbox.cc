#include "messaging/outbox.h"

#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace messaging {

using server_kit::Database;
using server_kit::Statement;

const char kOutboxMigration[] = R"sql(
  CREATE TABLE outbox (
    sequence       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT NOT NULL UNIQUE,
    aggregate_type TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    subject        TEXT NOT NULL,
    payload        BLOB NOT NULL,
    create_time    INTEGER NOT NULL,
    publish_time   INTEGER
  );
  CREATE INDEX outbox_unpublished ON outbox (sequence) WHERE publish_time IS NULL;
  CREATE INDEX outbox_published ON outbox (publish_time) WHERE publish_time IS NOT NULL;
)sql";

const char kPostgresOutboxMigration[] = R"sql(
  CREATE TABLE outbox (
    sequence       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id       TEXT COLLATE "C" NOT NULL UNIQUE,
    aggregate_type TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    subject        TEXT NOT NULL,
    payload        BYTEA NOT NULL,
    create_time    BIGINT NOT NULL,
    publish_time   BIGINT
  );
  CREATE INDEX outbox_unpublished ON outbox (sequence) WHERE publish_time IS NULL;
  CREATE INDEX outbox_published ON outbox (publish_time) WHERE publish_time IS NOT NULL;
)sql";

const char kPostgresOutboxClaimMigration[] = R"sql(
  CREATE INDEX outbox_unpublished_by_aggregate ON outbox (aggregate_type, aggregate_id, sequence)
    WHERE publish_time IS NULL;
)sql";

absl::Status AppendToOutbox(Database::Session& session, const OutboxEvent& event, absl::Time now) {
  Statement& insert = session.Prepare(
      "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, event_type, subject, payload, "
      "create_time) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  insert.BindText(1, event.event_id);
  insert.BindText(2, event.aggregate_type);
  insert.BindText(3, event.aggregate_id);
  insert.BindText(4, event.event_type);
  insert.BindText(5, event.subject);
  insert.BindBlob(6, event.payload);
  insert.BindTime(7, now);
  absl::Status inserted = insert.Run();
  if (absl::IsAlreadyExists(inserted)) {
    return absl::AlreadyExistsError(
        absl::StrCat("event \"", event.event_id, "\" is already in the outbox"));
  }
  return inserted;
}

namespace {

PendingEvent ReadPending(const Statement& row) {
  PendingEvent pending;
  pending.sequence = row.ColumnInt(0);
  pending.event.event_id = row.ColumnText(1);
  pending.event.aggregate_type = row.ColumnText(2);
  pending.event.aggregate_id = row.ColumnText(3);
  pending.event.event_type = row.ColumnText(4);
  pending.event.subject = row.ColumnText(5);
  pending.event.payload = row.ColumnBlob(6);
  pending.create_time = row.ColumnTime(7);
  return pending;
}

absl::Status MarkEach(Database::Session& session, const std::vector<std::int64_t>& sequences,
                      absl::Time now) {
  Statement& mark = session.Prepare(
      "UPDATE outbox SET publish_time = ?2 WHERE sequence = ?1 AND publish_time IS NULL");
  for (std::int64_t sequence : sequences) {
    mark.BindInt(1, sequence);
    mark.BindTime(2, now);
    if (absl::Status marked = mark.Run(); !marked.ok()) return marked;
    mark.Reset();
  }
  return absl::OkStatus();
}

}  // namespace

bool OutboxStore::supports_claims() const {
  return database_.engine() == server_kit::Engine::kPostgres;
}

absl::StatusOr<std::vector<PendingEvent>> OutboxStore::ReadUnpublished(int limit) {
  std::vector<PendingEvent> events;
  absl::Status status = database_.WithSession([&](Database::Session& session) {
    Statement& select = session.Prepare(
        "SELECT sequence, event_id, aggregate_type, aggregate_id, event_type, subject, payload, "
        "create_time FROM outbox WHERE publish_time IS NULL ORDER BY sequence LIMIT ?1");
    select.BindInt(1, limit);
    return select.ForEachRow([&](const Statement& row) { events.push_back(ReadPending(row)); });
  });
  if (!status.ok()) return status;
  return events;
}

absl::StatusOr<int> OutboxStore::PublishClaimed(int limit, const PublishClaimedEvents& publish,
                                                const std::function<absl::Time()>& now) {
  int claimed = 0;
  absl::Status status =
      database_.InClaimingTransaction([&](Database::Session& session) -> absl::Status {
        // An event whose aggregate has an older one unpublished waits for it, whether that
        // one is in this batch, held by another relay, or not yet free: SKIP LOCKED alone
        // would let a relay publish an aggregate's second event while another relay still
        // holds its first. The locked rows are read again after locking (READ COMMITTED), so
        // one another relay has just published is not taken.
        Statement& claim = session.Prepare(
            "SELECT o.sequence, o.event_id, o.aggregate_type, o.aggregate_id, o.event_type, "
            "o.subject, o.payload, o.create_time FROM outbox o WHERE o.publish_time IS NULL AND "
            "NOT EXISTS (SELECT 1 FROM outbox e WHERE e.publish_time IS NULL AND "
            "e.aggregate_type = o.aggregate_type AND e.aggregate_id = o.aggregate_id AND "
            "e.sequence < o.sequence) ORDER BY o.sequence LIMIT ?1 FOR UPDATE OF o SKIP LOCKED");
        claim.BindInt(1, limit);
        std::vector<PendingEvent> events;
        RETURN_IF_ERROR(
            claim.ForEachRow([&](const Statement& row) { events.push_back(ReadPending(row)); }));
        claimed = static_cast<int>(events.size());
        if (events.empty()) return absl::OkStatus();
        return MarkEach(session, publish(events), now());
      });
  if (!status.ok()) return status;
  return claimed;
}

absl::Status OutboxStore::MarkPublished(const std::vector<std::int64_t>& sequences,
                                        absl::Time now) {
  if (sequences.empty()) return absl::OkStatus();
  return database_.InTransaction(
      [&](Database::Session& session) { return MarkEach(session, sequences, now); });
}

absl::StatusOr<int> OutboxStore::PrunePublished(absl::Time published_before, int limit) {
  int pruned = 0;
  absl::Status status = database_.InTransaction([&](Database::Session& session) -> absl::Status {
    Statement& prune = session.Prepare(
        "DELETE FROM outbox WHERE sequence IN (SELECT sequence FROM outbox WHERE publish_time IS "
        "NOT NULL AND publish_time < ?1 ORDER BY publish_time LIMIT ?2)");
    prune.BindTime(1, published_before);
    prune.BindInt(2, limit);
    if (absl::Status deleted = prune.Run(); !deleted.ok()) return deleted;
    pruned = prune.changes();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return pruned;
}

absl::StatusOr<int> OutboxStore::MarkUnpublishedSince(absl::Time since) {
  int marked = 0;
  absl::Status status = database_.InTransaction([&](Database::Session& session) -> absl::Status {
    Statement& update = session.Prepare(
        "UPDATE outbox SET publish_time = NULL WHERE publish_time IS NOT NULL AND "
        "publish_time >= ?1");
    update.BindTime(1, since);
    if (absl::Status updated = update.Run(); !updated.ok()) return updated;
    marked = update.changes();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return marked;
}

absl::StatusOr<OutboxStats> OutboxStore::Stats() {
  OutboxStats stats;
  absl::Status status = database_.WithSession([&](Database::Session& session) -> absl::Status {
    Statement& select =
        session.Prepare("SELECT COUNT(*), MIN(create_time) FROM outbox WHERE publish_time IS NULL");
    absl::StatusOr<bool> row = select.Step();
    if (!row.ok()) return row.status();
    stats.unpublished = select.ColumnInt(0);
    if (!select.ColumnIsNull(1)) stats.oldest_unpublished = select.ColumnTime(1);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return stats;
}

}  // namespace messaging
