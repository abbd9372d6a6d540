// The consumer side of at-least-once delivery: an event's effect and the record that it was
// processed are committed in one local transaction, so a redelivered event is recognised and
// has no second effect, however long after the first delivery it comes (the broker's duplicate
// window is time-bounded; this is not).
//
//   Inbox inbox(database, handler, clock);
//   std::vector<EventOutcome> outcomes = inbox.Process(events);  // then ack / nak / term each
//
// A batch shares one transaction (one fsync), each event inside a savepoint of its own: an event
// that fails is rolled back alone. The handler's status decides:
//   OK                                              applied; recorded
//   INVALID_ARGUMENT, FAILED_PRECONDITION,          rejected: it can never be applied (undecodable,
//   NOT_FOUND, ALREADY_EXISTS, OUT_OF_RANGE,        invalid, contradicts the data); recorded with
//   UNIMPLEMENTED                                   its reason and payload, for operators to list
//   anything else (UNAVAILABLE, ABORTED, ...)       transient: nothing recorded; redeliver later
// An event recorded before (applied or rejected) is a duplicate: acknowledged, not applied.
// If the transaction as a whole fails (the disk, a busy database), every event is transient.
#ifndef HOSPITAL_SRC_MESSAGING_INBOX_H_
#define HOSPITAL_SRC_MESSAGING_INBOX_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "hospital/messaging/v1/inbox.pb.h"
#include "server_kit/database.h"
#include "server_kit/page.h"

namespace messaging {

// Creates the processed_events table; a consuming service adds it to its migrations.
extern const char kInboxMigration[];
extern const char kPostgresInboxMigration[];

struct InboundEvent {
  std::string event_id;  // Nats-Msg-Id, or "stream-sequence-<n>" without one.
  std::string subject;
  std::string payload;
  std::uint64_t stream_sequence = 0;
  std::uint64_t deliveries = 1;
};

// What a service does with one event, inside the inbox's transaction: apply its effect through
// `session` and return OK, or a status classified as above.
class EventHandler {
 public:
  virtual ~EventHandler() = default;
  virtual absl::Status Apply(server_kit::Database::Session& session, const InboundEvent& event,
                             absl::Time now) = 0;
};

enum class Disposition { kApplied, kDuplicate, kRejected, kRetry };
const char* DispositionName(Disposition disposition);

struct EventOutcome {
  Disposition disposition = Disposition::kRetry;
  absl::Status status;  // Why, for kRejected and kRetry.
};

// Whether a handler's failure is permanent (see the table above).
bool IsPermanentFailure(const absl::Status& status);

using RejectedEventPage = server_kit::Page<hospital::messaging::v1::RejectedEvent>;

class Inbox final {
 public:
  // Everything passed in must outlive this object.
  Inbox(server_kit::Database& database, EventHandler& handler, base::Clock& clock)
      : database_(database), handler_(handler), clock_(clock) {}

  // Processes `events` in order in one transaction; one outcome per event.
  std::vector<EventOutcome> Process(const std::vector<InboundEvent>& events);
  // Rejected events, most recent first, after `position` (from a previous page; empty for the
  // first). INVALID_ARGUMENT if `position` is not one this method returned.
  absl::StatusOr<RejectedEventPage> ListRejected(const std::string& position, int limit);

 private:
  server_kit::Database& database_;
  EventHandler& handler_;
  base::Clock& clock_;
};

}  // namespace messaging

#endif  // HOSPITAL_SRC_MESSAGING_INBOX_H_
