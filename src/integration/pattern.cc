#include "integration/pattern.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace integration {

const std::vector<PatternInfo>& AllPatterns() {
  static const auto* const patterns = [] {
    auto* all = new std::vector<PatternInfo>;
    PatternNeeds sync;
    sync.downstream_calls = true;
    all->push_back({Pattern::kSync, "sync", sync});
    PatternNeeds async;
    async.broker = true;
    async.outbox = true;
    all->push_back({Pattern::kAsync, "async", async});
    PatternNeeds batch;
    batch.peer_databases = true;
    batch.batch_job = true;
    batch.sqlite_only = true;
    all->push_back({Pattern::kSharedDbBatch, "shared_db_batch", batch});
    PatternNeeds direct;
    direct.peer_databases = true;
    direct.sqlite_only = true;
    all->push_back({Pattern::kDirectDbWrite, "direct_db_write", direct});
    PatternNeeds file_drop;
    file_drop.shared_directory = true;
    file_drop.outbox = true;
    file_drop.sqlite_only = true;
    all->push_back({Pattern::kFileDrop, "file_drop", file_drop});
    return all;
  }();
  return *patterns;
}

const PatternInfo& Describe(Pattern pattern) {
  for (const PatternInfo& info : AllPatterns()) {
    if (info.pattern == pattern) return info;
  }
  // Every enumerator has an entry above; reaching here is a bug in this file.
  return AllPatterns().front();
}

const std::string& PatternName(Pattern pattern) { return Describe(pattern).name; }

absl::StatusOr<Pattern> ParsePattern(absl::string_view name) {
  std::vector<std::string> names;
  for (const PatternInfo& info : AllPatterns()) {
    if (info.name == name) return info.pattern;
    names.push_back(info.name);
  }
  const std::string last = names.back();
  names.pop_back();
  return absl::InvalidArgumentError(absl::StrCat("--death_workflow: must be ",
                                                 absl::StrJoin(names, ", "), " or ", last,
                                                 ", got \"", name, "\""));
}

absl::Status CheckEngine(Pattern pattern, server_kit::Engine engine) {
  if (engine == server_kit::Engine::kSqlite || !Describe(pattern).needs.sqlite_only) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--death_workflow=", PatternName(pattern),
                   " is a shared-disk pattern and keeps every service's data in SQLite; --db "
                   "names PostgreSQL (only sync and async run on it)"));
}

}  // namespace integration
