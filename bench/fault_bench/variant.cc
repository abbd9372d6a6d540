#include "fault_bench/variant.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace fault_bench {
namespace {

Variant Synchronous(const std::string& name, const std::string& summary,
                    const std::string& policy_dir) {
  return {name, summary, {absl::StrCat("--resilience_policy=", policy_dir, "/", name, ".json")}};
}

}  // namespace

std::vector<Variant> Variants(const std::string& policy_dir) {
  return {
      Synchronous("naive", "synchronous gRPC calls: one attempt, a generous timeout, no breaker",
                  policy_dir),
      Synchronous("retries", "synchronous gRPC calls with retries and backoff, nothing else",
                  policy_dir),
      Synchronous("resilient",
                  "synchronous gRPC calls with deadlines, retries within a budget, circuit "
                  "breakers and bulkheads",
                  policy_dir),
      {"async",
       "transactional outbox in patients, NATS JetStream, idempotent consumers in morgue and "
       "appointments",
       // The policy governs only what synchronous deaths left behind (none here).
       {absl::StrCat("--resilience_policy=", policy_dir, "/resilient.json")},
       Pattern::kAsync},
      {"shared_db_batch",
       absl::StrFormat("a batch job (batch_sync) reads new deaths from the patients database "
                       "every %g s and writes them into the morgue's and appointments' "
                       "databases, remembering its position in its own",
                       kBatchIntervalSeconds),
       {},
       Pattern::kSharedDbBatch},
      {"direct_db_write",
       "the patients service writes each death into the morgue's and appointments' databases "
       "itself before it answers (1 s busy timeout; what it cannot write, it writes in the "
       "background and answers PENDING)",
       {"--direct_write_busy_timeout=1s"},
       Pattern::kDirectDbWrite},
      {"file_drop",
       absl::StrFormat("the patients service's outbox relay writes new deaths as one file every "
                       "%g s into a shared directory; morgue and appointments poll it every %g s "
                       "and apply each file in one transaction",
                       kBatchIntervalSeconds, kBatchIntervalSeconds),
       {},
       Pattern::kFileDrop},
      {"hedged",
       "resilient, with AdmitDeceased hedged instead of retried: another attempt after 20 ms "
       "without an answer (or at once after a timed-out one), up to 3, the first answer wins",
       {absl::StrCat("--resilience_policy=", policy_dir, "/hedged.json")},
       Pattern::kSync,
       /*opt_in=*/true},
      {"resilient-tls",
       "resilient, with every listener and channel on mutual TLS and the production caller "
       "policies on morgue and appointments",
       {absl::StrCat("--resilience_policy=", policy_dir, "/resilient.json")},
       Pattern::kSync,
       /*opt_in=*/true,
       /*tls=*/true},
      {"throttled",
       "resilient, with client-side adaptive throttling (k = 2, 10 s window) before every "
       "attempt",
       {absl::StrCat("--resilience_policy=", policy_dir, "/throttled.json")},
       Pattern::kSync,
       /*opt_in=*/true},
  };
}

absl::StatusOr<std::vector<Variant>> SelectVariants(const std::string& names,
                                                    const std::string& policy_dir) {
  const std::vector<Variant> known = Variants(policy_dir);
  std::vector<Variant> selected;
  for (absl::string_view name : absl::StrSplit(names, ',')) {
    const auto found = std::find_if(known.begin(), known.end(),
                                    [&](const Variant& variant) { return variant.name == name; });
    if (found == known.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--variants: no variant named \"", name, "\""));
    }
    for (const std::string& flag : found->patients_flags) {
      constexpr absl::string_view kPolicyFlag = "--resilience_policy=";
      if (absl::StartsWith(flag, kPolicyFlag) &&
          !std::filesystem::exists(flag.substr(kPolicyFlag.size()))) {
        return absl::InvalidArgumentError(absl::StrCat("--variants: ", name, ": no policy file ",
                                                       flag.substr(kPolicyFlag.size())));
      }
    }
    selected.push_back(*found);
  }
  return selected;
}

std::string Variant::BaseName() const {
  return storage == Storage::kPostgres && absl::EndsWith(name, kPostgresSuffix)
             ? name.substr(0, name.size() - std::strlen(kPostgresSuffix))
             : name;
}

absl::StatusOr<std::vector<Variant>> OnStorage(const std::vector<Variant>& variants,
                                               const std::string& engines,
                                               std::vector<std::string>& left_out) {
  std::vector<Variant> result;
  for (absl::string_view engine : absl::StrSplit(engines, ',')) {
    if (engine == "sqlite") {
      result.insert(result.end(), variants.begin(), variants.end());
    } else if (engine == "postgres") {
      for (Variant variant : variants) {
        if (variant.Needs().sqlite_only) {
          left_out.push_back(variant.name);
          continue;
        }
        variant.name += kPostgresSuffix;
        variant.summary +=
            "; each service's data on PostgreSQL (a primary and a synchronous "
            "standby)";
        variant.storage = Storage::kPostgres;
        result.push_back(std::move(variant));
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--storage: \"", engine, "\" is not an engine (sqlite, postgres, or both)"));
    }
  }
  if (result.empty()) {
    return absl::InvalidArgumentError(
        "--storage: none of the selected variants runs on it (the shared-disk patterns stay "
        "on SQLite)");
  }
  return result;
}

}  // namespace fault_bench
