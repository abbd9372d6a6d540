// The integration variants the benchmark compares: how the patients service reaches the morgue
// and the appointments service. Adding a variant is one entry in Variants() (variant.cc).
#ifndef HOSPITAL_BENCH_FAULT_BENCH_VARIANT_H_
#define HOSPITAL_BENCH_FAULT_BENCH_VARIANT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "integration/pattern.h"

namespace fault_bench {

// How a death reaches the morgue and the appointments service: the services' own list of
// patterns (src/integration/pattern.h), and what each needs started beside them.
using integration::Pattern;

// Where the three services keep their data. kPostgres: one PostgreSQL 15 primary with one
// synchronous standby (a commit is acknowledged once it is on both), a database per service,
// the services on the two-host URI with target_session_attrs=read-write (System).
enum class Storage { kSqlite, kPostgres };

// The suffix of a variant's name on PostgreSQL: "resilient+pg" is "resilient" on kPostgres.
inline constexpr char kPostgresSuffix[] = "+pg";

struct Variant {
  std::string name;     // "resilient"
  std::string summary;  // One line for the report.
  // Flags the patients service starts with, which configure the integration.
  std::vector<std::string> patients_flags;
  Pattern pattern = Pattern::kSync;
  // Runs only in the scenarios that name it (Scenario::runs_on): a policy built for one kind
  // of fault (hedging for a slow tail, throttling for overload) rather than a way to integrate.
  bool opt_in = false;
  // Every listener on mutual TLS (certificates from scripts/make-certs.sh, the bench a client
  // with a certificate of its own) and the production caller policies on morgue and
  // appointments: what TLS costs.
  bool tls = false;
  Storage storage = Storage::kSqlite;

  // The name without the storage suffix: the variant a scenario's runs_on and judged_on name
  // when it is meant on either engine.
  std::string BaseName() const;
  // The morgue's and appointments' databases are written by another process (the patients
  // service or the batch job): their own processes, and faults injected into them, are not on
  // a death's path; their databases are.
  bool WritesOtherDatabases() const { return Needs().peer_databases; }
  // Events through the patients service's outbox (broker, file drop).
  bool UsesOutbox() const { return Needs().outbox; }
  const integration::PatternNeeds& Needs() const { return integration::Describe(pattern).needs; }
};

// How often the batch variants move deaths (batch_sync's --sync_interval, the file drop's
// --file_drop_interval): the delay to consistency they are judged against.
inline constexpr double kBatchIntervalSeconds = 1.0;

// Every variant, in report order. Policy files are read from `policy_dir`.
std::vector<Variant> Variants(const std::string& policy_dir);

// The variants named in `names` (comma-separated), or INVALID_ARGUMENT naming the unknown one
// or a policy file that is missing.
absl::StatusOr<std::vector<Variant>> SelectVariants(const std::string& names,
                                                    const std::string& policy_dir);

// `variants` on each storage engine in `engines` (comma-separated "sqlite", "postgres"), engine
// by engine: on PostgreSQL each is renamed with kPostgresSuffix. The patterns that stay on
// SQLite (the shared-disk ones, integration::PatternNeeds::sqlite_only) are left out of the
// PostgreSQL list and named in `left_out`. INVALID_ARGUMENT for an unknown engine, or when
// nothing is left.
absl::StatusOr<std::vector<Variant>> OnStorage(const std::vector<Variant>& variants,
                                               const std::string& engines,
                                               std::vector<std::string>& left_out);

}  // namespace fault_bench

#endif  // HOSPITAL_BENCH_FAULT_BENCH_VARIANT_H_
