// Reads the morgue's and the appointments service's databases directly, beside the services'
// own connections, to see whether a death's effects are committed: a fault injected into the
// services' RPCs, or a frozen process, must not hide an effect that is there. On SQLite the
// files are opened read-only (WAL lets them); on PostgreSQL one libpq connection per database
// follows whichever server takes writes, so that it moves with a promoted standby.
#ifndef HOSPITAL_BENCH_FAULT_BENCH_EFFECT_READER_H_
#define HOSPITAL_BENCH_FAULT_BENCH_EFFECT_READER_H_

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "fault_bench/system.h"

namespace fault_bench {

class EffectReader {
 public:
  virtual ~EffectReader() = default;

  // Whether anything may have committed to the database since the previous call: exact on
  // SQLite (PRAGMA data_version), always true on PostgreSQL, which has no such counter (its
  // readers are asked less often instead: poll_interval). True on the first call, and when the
  // version cannot be read.
  virtual bool MorgueChanged() = 0;
  virtual bool AppointmentsChanged() = 0;
  // Of `patient_ids`, those the morgue holds admitted (or released since, by the bench's
  // clerk); none when the database cannot be read.
  virtual std::set<std::string> Admitted(const std::vector<std::string>& patient_ids) = 0;
  // Of `patient_ids`, those without a scheduled appointment; none when it cannot be read.
  virtual std::set<std::string> NoneScheduled(const std::vector<std::string>& patient_ids) = 0;
  // How often a watcher should ask: 1 ms on SQLite (the reads are local), 10 ms on PostgreSQL
  // (each read is a round trip to a server the load is measured on).
  virtual absl::Duration poll_interval() const = 0;
};

// The reader of `system`'s databases, on its storage engine.
std::unique_ptr<EffectReader> ReadEffectsOf(const System& system);

}  // namespace fault_bench

#endif  // HOSPITAL_BENCH_FAULT_BENCH_EFFECT_READER_H_
