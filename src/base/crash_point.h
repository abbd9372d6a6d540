// Named points at which a test can make the process die, to show what a crash at exactly that
// moment leaves behind (an event fetched but not applied, applied but not acknowledged, a file
// half written).
//
//   base::CrashPoint("consumer.committed");  // where a crash is worth proving harmless
//
// HOSPITAL_CRASH_AT=<name> in the process's environment arms one point, and <name>@<n> its n-th
// pass (the first by default): that pass writes "crash point <name> reached" to stderr and kills
// the process with SIGKILL, as the OOM killer or a power cut would: no destructor, atexit handler
// or buffered write runs. The variable is read once, at the first pass of any point; an unarmed
// point then costs a pointer load and a branch. Thread-safe.
//
// The points, by the component that passes them:
//   consumer.fetched            JetStream consumer: a batch fetched, nothing applied yet
//   inbox.applied               inbox: every event's handler ran, the transaction not committed
//   consumer.committed          JetStream consumer: the inbox committed, no event acknowledged
//   consumer.acknowledged       JetStream consumer: the committed events acknowledged
//   publisher.sent              JetStream publisher: events sent, the broker's acks not awaited
//   relay.acknowledged          outbox relay: the broker acknowledged, the outbox not yet marked
//   file_drop.half_written      durable file write: half the bytes in the temporary file
//   file_drop.renamed           file drop producer: the file in place, the outbox not yet marked
//   file_drop_consumer.read     file drop consumer: a file read, nothing applied yet
//   file_drop_consumer.committed  file drop consumer: the inbox committed, no marker written
//   file_drop_consumer.marked   file drop consumer: the file's done marker written
#ifndef HOSPITAL_SRC_BASE_CRASH_POINT_H_
#define HOSPITAL_SRC_BASE_CRASH_POINT_H_

#include <string>
#include <string_view>

namespace base {

// Kills the process here if HOSPITAL_CRASH_AT names this point and this is the pass it names.
void CrashPoint(std::string_view name);

// HOSPITAL_CRASH_AT as read (empty when unset), for a service to say at start that it is armed.
const std::string& ArmedCrashPoint();

}  // namespace base

#endif  // HOSPITAL_SRC_BASE_CRASH_POINT_H_
