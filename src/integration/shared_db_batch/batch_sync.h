// The shared-database batch job of --death_workflow=shared_db_batch: every interval it reads
// the deaths it has not yet copied from the patients service's database and applies them to the
// morgue's and the appointments service's databases, in those files directly. This is the
// integration style the benchmark measures against calls and messages: it couples the job to
// three schemas it does not own, and a death reaches the others only at the next pass.
//
// Built as well as the pattern allows, so that what the benchmark shows is the pattern's cost
// and not a careless job's:
//   - A death is applied through the code the target service itself runs for a PatientDied
//     event (its EventHandler), inside the target's inbox (messaging/inbox.h): effect and
//     "processed" record commit together, so the same death applied twice has one effect.
//   - Per target, the position (the last death_workflows rowid applied there) is kept in this
//     job's own database and saved after the target's commit. A crash between the two re-applies
//     that batch, which the inbox answers as duplicates: nothing lost, nothing doubled.
//   - Targets are independent: a locked or missing morgue database holds back the morgue's
//     position only; the appointments service keeps receiving deaths.
//   - The patients database is only read, on its read-only connection (a snapshot).
// What it reads of the patients database, and the table of positions, are named in
// patients/shared_schema.h, which the patients service's migrations include too.
//
// The patients service reuses it in --death_workflow=direct_db_write (the same pass, run right
// after each death's commit and as a background catch-up), with its own database as both `own`
// and `patients`.
//
// Not thread-safe: one pass at a time.
#ifndef HOSPITAL_SRC_INTEGRATION_SHARED_DB_BATCH_BATCH_SYNC_H_
#define HOSPITAL_SRC_INTEGRATION_SHARED_DB_BATCH_BATCH_SYNC_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/clock.h"
#include "messaging/inbox.h"
#include "server_kit/database.h"

namespace integration::shared_db_batch {

// Opens the database file of another service named by flag `flag` (the batch job's, or the
// patients service's with --death_workflow=direct_db_write). The error names the flag;
// `required` says when it is needed, for an empty `path`.
absl::StatusOr<std::unique_ptr<server_kit::Database>> OpenServiceDatabase(
    absl::string_view flag, const std::string& path, absl::string_view required,
    const server_kit::DatabaseOptions& options = {});

// The job's own schema: its position per target (patients::kCopyPositionsMigration).
const server_kit::Schema& Migrations();

struct SyncTarget {
  std::string name;                  // "morgue"; labels the metrics and the position.
  server_kit::Database* database;    // The target service's database.
  messaging::EventHandler* handler;  // What that service does with a PatientDied event.
};

class BatchSync final {
 public:
  // Everything passed in must outlive this object. `batch_size` deaths at most per target per
  // transaction.
  BatchSync(server_kit::Database& own, server_kit::Database& patients,
            std::vector<SyncTarget> targets, base::Clock& clock, prometheus::Registry& metrics,
            int batch_size);

  // One pass: every target is brought up to date (in batches), or stopped at its first failure.
  // Returns OK, or the first failure (the other targets were still served).
  absl::Status RunOnce();

 private:
  struct Death {
    std::int64_t rowid = 0;
    messaging::InboundEvent event;
  };
  // Applies the next batch to `target`; how many deaths it took (0: up to date).
  absl::StatusOr<int> SyncBatch(const SyncTarget& target);
  absl::StatusOr<std::int64_t> Position(const std::string& target);
  absl::Status SavePosition(const std::string& target, std::int64_t rowid);
  // Completed deaths after `rowid`, at most batch_size_, as PatientDied events.
  absl::StatusOr<std::vector<Death>> ReadDeaths(std::int64_t rowid);

  server_kit::Database& own_;
  server_kit::Database& patients_;
  const std::vector<SyncTarget> targets_;
  base::Clock& clock_;
  const int batch_size_;
  prometheus::Family<prometheus::Counter>& events_;
  prometheus::Family<prometheus::Counter>& failures_;
  prometheus::Family<prometheus::Gauge>& last_success_;
};

}  // namespace integration::shared_db_batch

#endif  // HOSPITAL_SRC_INTEGRATION_SHARED_DB_BATCH_BATCH_SYNC_H_
