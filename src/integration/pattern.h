// The five ways the benchmark compares of telling the morgue and the appointments service of a
// death, each a module of its own under src/integration/<name>/ named after its
// --death_workflow value, and what each needs beyond the services' own databases. The factories
// (producer_factory.h in the patients service, consumer_factory.h in the other two) set up only
// what the chosen pattern needs; the benchmark and scripts/run-local.sh start only that.
//
// Adding a pattern: its folder, an entry below, a case in each factory, a variant of the
// benchmark (bench/fault_bench/variant.cc), and its page in docs/.
#ifndef HOSPITAL_SRC_INTEGRATION_PATTERN_H_
#define HOSPITAL_SRC_INTEGRATION_PATTERN_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server_kit/database.h"

namespace integration {

enum class Pattern {
  // sync/: the patients service calls both over gRPC (through src/resilience) before it answers,
  // and undoes its work when either fails.
  kSync,
  // async/: the death commits with an event in the patients service's outbox, relayed to NATS
  // JetStream; the morgue and the appointments service consume it.
  kAsync,
  // shared_db_batch/: the death is recorded in the patients database only; the batch_sync job
  // copies it into the other two databases every interval.
  kSharedDbBatch,
  // direct_db_write/: the patients service writes the death into the other two databases
  // itself, right after its own commit.
  kDirectDbWrite,
  // file_drop/: the outbox relay writes events as files into a shared directory every
  // interval; the other two poll it.
  kFileDrop,
};

// What a pattern needs besides each service's own database.
struct PatternNeeds {
  bool downstream_calls = false;  // gRPC channels from the patients service to the other two.
  bool broker = false;            // A NATS JetStream server (--nats_url).
  bool shared_directory = false;  // A directory the three services share (--file_drop_dir).
  bool peer_databases = false;    // The other two services' database files, written by another
                                  // process than their owners.
  bool batch_job = false;         // The batch_sync process.
  bool outbox = false;            // Events through the patients service's outbox and relay.
  // Every service's data in SQLite: the shared-disk patterns model teams that share a disk and
  // its files (rowid order, ATTACH, a directory beside them); sync and async run on PostgreSQL
  // too.
  bool sqlite_only = false;
};

struct PatternInfo {
  Pattern pattern;
  std::string name;  // The --death_workflow value and the module's folder.
  PatternNeeds needs;
};

// Every pattern, in the order above.
const std::vector<PatternInfo>& AllPatterns();
const PatternInfo& Describe(Pattern pattern);
// "sync", "async", ...
const std::string& PatternName(Pattern pattern);
// INVALID_ARGUMENT naming --death_workflow and every valid value for anything else.
absl::StatusOr<Pattern> ParsePattern(absl::string_view name);
// INVALID_ARGUMENT naming both flags when `pattern` cannot run on `engine`.
absl::Status CheckEngine(Pattern pattern, server_kit::Engine engine);

}  // namespace integration

#endif  // HOSPITAL_SRC_INTEGRATION_PATTERN_H_
