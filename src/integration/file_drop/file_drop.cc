#include "integration/file_drop/file_drop.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/crash_point.h"
#include "hospital/messaging/v1/file_drop.pb.h"
#include "server_kit/log.h"
#include "server_kit/rpc_support.h"

namespace integration::file_drop {
namespace {

constexpr absl::string_view kMagic = "HOSPEVT1";
constexpr absl::string_view kExtension = ".evt";
constexpr absl::string_view kDoneInfix = ".done-";

void AppendLittleEndian(std::string& out, std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

std::uint64_t ReadLittleEndian(absl::string_view bytes) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    value |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  }
  return value;
}

std::uint32_t Crc32(absl::string_view bytes) {
  return static_cast<std::uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size())));
}

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status SyncPath(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) return Errno("open", path);
  const int synced = ::fsync(fd);
  ::close(fd);
  if (synced != 0) return Errno("fsync", path);
  return absl::OkStatus();
}

// The event files of `directory`, in name order (which is write order).
std::vector<std::string> EventFiles(const std::string& directory) {
  std::vector<std::string> names;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(directory, error)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && absl::EndsWith(name, kExtension)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string DoneMarker(const std::string& file, const std::string& consumer) {
  return absl::StrCat(file, kDoneInfix, consumer);
}

}  // namespace

std::string EncodeEventFile(const std::vector<messaging::PendingEvent>& events, absl::Time now) {
  hospital::messaging::v1::EventFile file;
  for (const messaging::PendingEvent& pending : events) {
    auto* event = file.add_events();
    event->set_event_id(pending.event.event_id);
    event->set_subject(pending.event.subject);
    event->set_event_type(pending.event.event_type);
    event->set_payload(pending.event.payload);
  }
  *file.mutable_write_time() = server_kit::ToProtoTime(now);
  const std::string body = file.SerializeAsString();
  std::string bytes(kMagic);
  AppendLittleEndian(bytes, body.size(), 8);
  bytes += body;
  AppendLittleEndian(bytes, Crc32(body), 4);
  return bytes;
}

absl::StatusOr<std::vector<messaging::InboundEvent>> DecodeEventFile(absl::string_view bytes) {
  if (!absl::StartsWith(bytes, kMagic)) {
    return absl::DataLossError("not an event file (no HOSPEVT1 magic)");
  }
  bytes.remove_prefix(kMagic.size());
  if (bytes.size() < 8) return absl::DataLossError("cut short before its length");
  const std::uint64_t length = ReadLittleEndian(bytes.substr(0, 8));
  bytes.remove_prefix(8);
  if (bytes.size() != length + 4) {
    return absl::DataLossError(
        absl::StrFormat("holds %d bytes after its length, not %d + 4", bytes.size(), length));
  }
  const absl::string_view body = bytes.substr(0, length);
  if (ReadLittleEndian(bytes.substr(length, 4)) != Crc32(body)) {
    return absl::DataLossError("checksum mismatch: the file was damaged");
  }
  hospital::messaging::v1::EventFile file;
  if (!file.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
    return absl::DataLossError("its events cannot be decoded");
  }
  std::vector<messaging::InboundEvent> events;
  for (const auto& event : file.events()) {
    messaging::InboundEvent inbound;
    inbound.event_id = event.event_id();
    inbound.subject = event.subject();
    inbound.payload = event.payload();
    events.push_back(std::move(inbound));
  }
  return events;
}

absl::Status WriteFileDurably(const std::string& directory, const std::string& name,
                              absl::string_view contents) {
  const std::string path = absl::StrCat(directory, "/", name);
  const std::string temporary = absl::StrCat(directory, "/.", name, ".tmp");
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("create", temporary);
  std::size_t written = 0;
  // Written in two halves, so that a test can crash the writer between them.
  const std::size_t half = contents.size() / 2;
  while (written < contents.size()) {
    if (written == half && half > 0) base::CrashPoint("file_drop.half_written");
    const std::size_t until = written < half ? half : contents.size();
    const ssize_t n = ::write(fd, contents.data() + written, until - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      const absl::Status status = Errno("write", temporary);
      ::close(fd);
      return status;
    }
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const absl::Status status = Errno("fsync", temporary);
    ::close(fd);
    return status;
  }
  ::close(fd);
  if (::rename(temporary.c_str(), path.c_str()) != 0) return Errno("rename", temporary);
  // The rename itself is durable once the directory is.
  return SyncPath(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

std::vector<absl::Status> FileDropPublisher::Publish(
    const std::vector<messaging::PendingEvent>& events) {
  if (events.empty()) return {};
  // Named by the sequences it holds, zero-padded: name order is write order.
  const std::string name = absl::StrFormat("events-%020d-%020d%s", events.front().sequence,
                                           events.back().sequence, kExtension);
  const absl::Status written =
      WriteFileDurably(directory_, name, EncodeEventFile(events, clock_.Now()));
  if (written.ok()) base::CrashPoint("file_drop.renamed");
  return std::vector<absl::Status>(events.size(), written);
}

absl::StatusOr<int> RemoveUnfinishedEventFiles(const std::string& directory) {
  int removed = 0;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(directory, error)) {
    const std::string name = entry.path().filename().string();
    // WriteFileDurably's temporary for "events-....evt" is ".events-....evt.tmp".
    if (!entry.is_regular_file() || !absl::StartsWith(name, ".events-") ||
        !absl::EndsWith(name, absl::StrCat(kExtension, ".tmp"))) {
      continue;
    }
    std::error_code removal;
    std::filesystem::remove(entry.path(), removal);
    if (removal) {
      return absl::UnavailableError(
          absl::StrCat("remove ", entry.path().string(), ": ", removal.message()));
    }
    ++removed;
  }
  if (error) return absl::UnavailableError(absl::StrCat("list ", directory, ": ", error.message()));
  return removed;
}

absl::StatusOr<int> RemoveConsumedFiles(const std::string& directory,
                                        const std::vector<std::string>& consumers) {
  int removed = 0;
  for (const std::string& name : EventFiles(directory)) {
    const std::string path = absl::StrCat(directory, "/", name);
    const bool everyone_done = std::all_of(consumers.begin(), consumers.end(), [&](const auto& c) {
      return std::filesystem::exists(DoneMarker(path, c));
    });
    if (!everyone_done) continue;
    std::error_code error;
    std::filesystem::remove(path, error);
    if (error) {
      return absl::UnavailableError(absl::StrCat("remove ", path, ": ", error.message()));
    }
    for (const std::string& consumer : consumers) {
      std::filesystem::remove(DoneMarker(path, consumer), error);
    }
    ++removed;
  }
  return removed;
}

FileDropConsumer::FileDropConsumer(messaging::Inbox& inbox, prometheus::Registry& metrics,
                                   FileDropConsumerOptions options)
    : inbox_(inbox),
      options_(std::move(options)),
      files_(prometheus::BuildCounter()
                 .Name("hospital_file_drop_files_total")
                 .Help("Event files this consumer finished, by outcome: applied (its events "
                       "applied or recognised as duplicates), rejected (set aside: damaged).")
                 .Register(metrics)),
      events_(prometheus::BuildCounter()
                  .Name("hospital_file_drop_events_total")
                  .Help("Events read from files, by outcome (applied, duplicate, rejected, "
                        "retry).")
                  .Register(metrics)) {}

void FileDropConsumer::Start() {
  loop_.emplace(options_.interval, [this] { (void)RunOnce(); });
}

void FileDropConsumer::Stop() {
  {
    base::MutexLock lock(&mutex_);
    stopping_ = true;
    wake_.SignalAll();
  }
  if (loop_) loop_->Stop();
}

bool FileDropConsumer::WaitUntil(absl::Time until) {
  base::MutexLock lock(&mutex_);
  while (!stopping_ && absl::Now() < until) wake_.WaitWithDeadline(&mutex_, until);
  return !stopping_;
}

absl::Status FileDropConsumer::InjectFaults(std::size_t events) {
  if (options_.faults == nullptr || options_.fault_method.empty()) return absl::OkStatus();
  for (std::size_t i = 0; i < events; ++i) {
    // Decided as the consumer reaches each event: a rule set or cleared meanwhile applies from
    // the next one on, as it would to the next RPC.
    const server_kit::FaultDecision decision = options_.faults->Decide(options_.fault_method);
    switch (decision.kind) {
      case server_kit::FaultDecision::Kind::kNone:
        break;
      case server_kit::FaultDecision::Kind::kDelay:
        if (!WaitUntil(absl::Now() + decision.delay)) {
          return absl::UnavailableError("the consumer is stopping");
        }
        break;
      case server_kit::FaultDecision::Kind::kAbort:
        events_.Add({{"consumer", options_.consumer}, {"outcome", "retry"}}).Increment();
        return decision.abort_status;
      case server_kit::FaultDecision::Kind::kHang:
        WaitUntil(absl::InfiniteFuture());
        return absl::UnavailableError("the consumer is stopping");
    }
  }
  return absl::OkStatus();
}

absl::Status FileDropConsumer::RunOnce() {
  for (const std::string& name : EventFiles(options_.directory)) {
    const std::string path = absl::StrCat(options_.directory, "/", name);
    if (std::filesystem::exists(DoneMarker(path, options_.consumer))) continue;
    std::ifstream file(path, std::ios::binary);
    if (!file) continue;  // Set aside or cleaned up meanwhile.
    std::stringstream bytes;
    bytes << file.rdbuf();
    base::CrashPoint("file_drop_consumer.read");
    absl::StatusOr<std::vector<messaging::InboundEvent>> events = DecodeEventFile(bytes.str());
    if (!events.ok()) {
      SetAside(name, events.status());
      continue;
    }
    if (absl::Status injected = InjectFaults(events->size()); !injected.ok()) {
      // Nothing of the file applied: it is taken again, from the start, next pass.
      return injected;
    }
    const std::vector<messaging::EventOutcome> outcomes = inbox_.Process(*events);
    base::CrashPoint("file_drop_consumer.committed");
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
      events_
          .Add({{"consumer", options_.consumer},
                {"outcome", messaging::DispositionName(outcomes[i].disposition)}})
          .Increment();
      if (outcomes[i].disposition == messaging::Disposition::kRetry) {
        // Nothing of the file is marked: it is applied again, from the start, next pass.
        server_kit::Log(server_kit::LogLevel::kWarning, "file_drop_retry",
                        {{"file", name}, {"error", outcomes[i].status.ToString()}});
        return outcomes[i].status;
      }
    }
    if (absl::Status marked =
            WriteFileDurably(options_.directory, DoneMarker(name, options_.consumer), "");
        !marked.ok()) {
      return marked;
    }
    base::CrashPoint("file_drop_consumer.marked");
    files_.Add({{"consumer", options_.consumer}, {"outcome", "applied"}}).Increment();
  }
  return absl::OkStatus();
}

void FileDropConsumer::SetAside(const std::string& name, const absl::Status& why) {
  const std::string rejected = absl::StrCat(options_.directory, "/rejected");
  std::error_code error;
  std::filesystem::create_directories(rejected, error);
  const std::string from = absl::StrCat(options_.directory, "/", name);
  if (::rename(from.c_str(), absl::StrCat(rejected, "/", name).c_str()) != 0) {
    return;  // Another consumer set it aside first.
  }
  (void)WriteFileDurably(rejected, absl::StrCat(name, ".reason"),
                         absl::StrCat(options_.consumer, ": ", why.message(), "\n"));
  files_.Add({{"consumer", options_.consumer}, {"outcome", "rejected"}}).Increment();
  server_kit::Log(server_kit::LogLevel::kError, "file_drop_rejected",
                  {{"file", name}, {"consumer", options_.consumer}, {"error", why.ToString()}});
}

}  // namespace integration::file_drop
