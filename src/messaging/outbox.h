// The transactional outbox: events are appended in the same local transaction as the change
// they announce, and a relay publishes them afterwards, so that an event exists exactly when
// its change was committed, whatever fails later.
//
//   database.InTransaction([&](Session& session) {
//     ... change the patient ...
//     return AppendToOutbox(session, event, now);
//   });
//   relay.Notify();  // publish soon
//
// The table (kOutboxMigration) has the columns change-data-capture tools use (event id, aggregate
// type and id, event type, payload) so that a log-tailing relay could replace the polling one.
// `sequence` is assigned at insert. On SQLite, with its one writing connection, that is commit
// order. On PostgreSQL concurrent transactions may commit out of sequence order, so a relay pass
// can find 11 before 10 has committed; 10 is then published by a later pass. Events of one
// aggregate stay in order: the transactions that append them write the same aggregate's rows
// and are serialised.
//
// Several relays (one in each replica of the service, on PostgreSQL) share the table through
// PublishClaimed: each claims events no other relay holds, and of each aggregate only its oldest
// unpublished event, so that a later event of the aggregate cannot overtake it through another
// relay.
//
// Delivery is at least once: an event is marked published only after the broker acknowledged
// it, so a relay that dies in between publishes it again (the broker's duplicate window drops a
// repeat within it; consumers deduplicate beyond it).
#ifndef HOSPITAL_SRC_MESSAGING_OUTBOX_H_
#define HOSPITAL_SRC_MESSAGING_OUTBOX_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server_kit/database.h"

namespace messaging {

// Creates the outbox table; a service adds it to its migrations (SQLite's, PostgreSQL's).
extern const char kOutboxMigration[];
extern const char kPostgresOutboxMigration[];
// PostgreSQL, after kPostgresOutboxMigration: the index PublishClaimed needs.
extern const char kPostgresOutboxClaimMigration[];

struct OutboxEvent {
  std::string event_id;        // Unique; becomes Nats-Msg-Id.
  std::string aggregate_type;  // "patient"
  std::string aggregate_id;    // The patient id: events of one aggregate stay in order.
  std::string event_type;      // Full protobuf message name.
  std::string subject;         // Where it is published.
  std::string payload;         // The serialized message.
};

// An event not yet acknowledged by the broker.
struct PendingEvent {
  std::int64_t sequence = 0;
  OutboxEvent event;
  absl::Time create_time;
};

// Appends `event` inside the caller's transaction. ALREADY_EXISTS if its id is taken.
absl::Status AppendToOutbox(server_kit::Database::Session& session, const OutboxEvent& event,
                            absl::Time now);

struct OutboxStats {
  std::int64_t unpublished = 0;
  // Creation time of the oldest unpublished event, if any.
  std::optional<absl::Time> oldest_unpublished;
};

// The relay's access to the table. Each method is one transaction.
class OutboxStore final {
 public:
  explicit OutboxStore(server_kit::Database& database) : database_(database) {}

  // Whether PublishClaimed can be used (PostgreSQL); otherwise one relay reads and marks.
  bool supports_claims() const;
  // The oldest unpublished events, in sequence (commit) order, at most `limit`.
  absl::StatusOr<std::vector<PendingEvent>> ReadUnpublished(int limit);
  // Claims up to `limit` unpublished events in sequence order that no other relay holds, the
  // oldest unpublished event of each aggregate only, and hands them to `publish`, which returns
  // the sequences the broker acknowledged; those are marked published at `now()`. All in one
  // transaction (Database::InClaimingTransaction), so the claim lasts as long as the publish
  // and ends with the process. Returns how many events were claimed (0: none free).
  // UNIMPLEMENTED unless supports_claims().
  using PublishClaimedEvents =
      std::function<std::vector<std::int64_t>(const std::vector<PendingEvent>&)>;
  absl::StatusOr<int> PublishClaimed(int limit, const PublishClaimedEvents& publish,
                                     const std::function<absl::Time()>& now);
  // Marks these events published at `now`.
  absl::Status MarkPublished(const std::vector<std::int64_t>& sequences, absl::Time now);
  // Deletes at most `limit` events published before `published_before`; returns how many.
  absl::StatusOr<int> PrunePublished(absl::Time published_before, int limit);
  absl::StatusOr<OutboxStats> Stats();
  // Marks every event published at or after `since` unpublished again, so that the relay sends
  // it again (after a broker lost what it had acknowledged); returns how many. Events already
  // pruned are gone: the retention must cover the window a broker can lose.
  absl::StatusOr<int> MarkUnpublishedSince(absl::Time since);

 private:
  server_kit::Database& database_;
};

}  // namespace messaging

#endif  // HOSPITAL_SRC_MESSAGING_OUTBOX_H_
