// The file-drop integration (--death_workflow=file_drop): the patients service writes batches of
// outbox events as files into a directory it shares with the morgue and the appointments
// service, which poll it and apply each file's events. This is the integration style teams reach
// for when they have a shared disk and no broker; the benchmark measures its delay (an interval
// on each side) and its failure modes against the others.
//
// Built as well as the pattern allows:
//   - A file appears complete or not at all: written under a temporary name, synced, renamed,
//     and the directory synced. Its contents carry their length and a CRC-32 (file_drop.proto),
//     so a file damaged on disk, or cut short by anything that bypasses the rename, is never
//     applied in part: the first consumer to read it moves it to rejected/ with a .reason file.
//   - Producer: the outbox relay (messaging/outbox_relay.h) with FileDropPublisher as its
//   publisher, one
//     file per pass, every interval. An event is marked published only after its file is
//     durable; a crash in between writes it again in a later file, a duplicate the consumers'
//     inboxes recognise.
//   - Consumer (FileDropConsumer): files in name order (the name starts with the outbox sequence
//     of its first event); all of a file's events in one inbox transaction (messaging/inbox.h),
//     then a durable marker "<file>.done-<consumer>". A crash between the commit and the marker
//     re-applies the file: duplicates, no second effect. An event that cannot be applied now
//     (a locked database) stops the consumer at that file until the next pass: order holds.
//   - Faults (server_kit/fault_injection.h) reach the consumer as they reach the JetStream
//     consumer: each event of a file is decided under a pseudo-method before the file is
//     applied, so that an operator's abort rule holds the consumer at the file (nothing of it
//     applied) and a delay rule slows the handling of each event.
//   - Clean-up (RemoveConsumedFiles): a file and its markers go once every consumer named to
//     the producer has its marker there.
#ifndef HOSPITAL_SRC_INTEGRATION_FILE_DROP_FILE_DROP_H_
#define HOSPITAL_SRC_INTEGRATION_FILE_DROP_FILE_DROP_H_

#include <optional>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/clock.h"
#include "base/periodic_thread.h"
#include "base/sync.h"
#include "messaging/inbox.h"
#include "messaging/outbox.h"
#include "messaging/outbox_relay.h"
#include "server_kit/fault_injection.h"

namespace integration::file_drop {

// A file's bytes for `events`, written at `now`.
std::string EncodeEventFile(const std::vector<messaging::PendingEvent>& events, absl::Time now);
// The events of a file's bytes; DATA_LOSS naming what is wrong (magic, length, checksum,
// encoding) for a file that must not be applied.
absl::StatusOr<std::vector<messaging::InboundEvent>> DecodeEventFile(absl::string_view bytes);

// Writes `contents` to `directory`/`name` so that the file appears complete or not at all, and
// survives a power cut once this returns: a temporary file, fsync, rename, fsync of the directory.
absl::Status WriteFileDurably(const std::string& directory, const std::string& name,
                              absl::string_view contents);

// The outbox relay's publisher for file drops: each Publish writes one file with all the events.
class FileDropPublisher final : public messaging::EventPublisher {
 public:
  explicit FileDropPublisher(std::string directory, base::Clock& clock)
      : directory_(std::move(directory)), clock_(clock) {}
  std::vector<absl::Status> Publish(const std::vector<messaging::PendingEvent>& events) override;

 private:
  const std::string directory_;
  base::Clock& clock_;
};

// Deletes the temporary files of event files whose write never finished (the producer crashed
// before the rename); returns how many went. Their events are still unmarked in the outbox and
// go again in a later file. For the producer at start, before its relay runs; consumers' own
// temporaries (markers being written) are left alone.
absl::StatusOr<int> RemoveUnfinishedEventFiles(const std::string& directory);

// Deletes every event file of `directory` that each of `consumers` has marked done, with its
// markers; returns how many files went.
absl::StatusOr<int> RemoveConsumedFiles(const std::string& directory,
                                        const std::vector<std::string>& consumers);

struct FileDropConsumerOptions {
  std::string directory;
  std::string consumer;  // "morgue": names its markers and metrics.
  absl::Duration interval = absl::Seconds(1);
  // Rules matching `fault_method` ("/package.Service/Method") abort or delay the handling of an
  // event; null or empty: no faults. The injector must outlive the consumer.
  server_kit::FaultInjector* faults = nullptr;
  std::string fault_method;
};

class FileDropConsumer final {
 public:
  // `inbox` must outlive this object.
  FileDropConsumer(messaging::Inbox& inbox, prometheus::Registry& metrics,
                   FileDropConsumerOptions options);
  ~FileDropConsumer() { Stop(); }

  // Polls every interval on a thread of its own until Stop.
  void Start();
  void Stop();
  // One pass over the directory; the first error (a file stays for the next pass), or OK.
  absl::Status RunOnce();

 private:
  // Moves a file that must not be applied to rejected/, with the reason beside it.
  void SetAside(const std::string& name, const absl::Status& why);
  // The injected faults for a file of `events` events, decided event by event: the first
  // abort's status (the file is left for the next pass), after waiting out every delay before
  // it; UNAVAILABLE for a hang, which waits until Stop.
  absl::Status InjectFaults(std::size_t events);
  // Waits until `until` or Stop; false if stopped.
  bool WaitUntil(absl::Time until);

  messaging::Inbox& inbox_;
  const FileDropConsumerOptions options_;
  prometheus::Family<prometheus::Counter>& files_;
  prometheus::Family<prometheus::Counter>& events_;
  std::optional<base::PeriodicThread> loop_;
  base::Mutex mutex_;
  base::CondVar wake_;
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
};

}  // namespace integration::file_drop

#endif  // HOSPITAL_SRC_INTEGRATION_FILE_DROP_FILE_DROP_H_
