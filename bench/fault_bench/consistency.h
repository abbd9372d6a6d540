// The end-of-run consistency check: after faults clear, the three services must agree.
//   - every patient recorded dead is ADMITTED in the morgue, its admission confirmed (no longer
//     provisional: the body can be released), and has no scheduled appointment;
//   - no living patient is admitted, or has appointments cancelled (only deaths cancel here);
//   - no patient has two admissions;
//   - every RecordDeath the caller saw succeed left the patient dead (no acknowledged write lost).
// With the asynchronous variant the other services act after RecordDeath returns, so a dead
// patient not yet admitted is a violation only until the event arrives: the benchmark checks
// again until the services agree (or 60 s pass), and reports how long that took. The people
// using the system during the load (UserActions) add their own rules: an acknowledged release,
// cancellation or booking must survive whatever happened to a death meanwhile.
#ifndef HOSPITAL_BENCH_FAULT_BENCH_CONSISTENCY_H_
#define HOSPITAL_BENCH_FAULT_BENCH_CONSISTENCY_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "hospital/appointments/v1/appointments.grpc.pb.h"
#include "hospital/morgue/v1/morgue.grpc.pb.h"
#include "hospital/patients/v1/patients.grpc.pb.h"

namespace fault_bench {

// What people did through the services during the load, as the services acknowledged it (the
// bench's user traffic: a clerk releasing bodies, patients cancelling and booking appointments,
// aimed at patients whose deaths are in flight). The checker holds the services to it.
struct UserActions {
  // Patients whose body a ReleaseBody released: they must end dead, the admission RELEASED.
  std::set<std::string> released;
  // Appointments a patient cancelled themselves (appointment id -> the reason they gave): they
  // must end CANCELLED with that reason, whatever happened to a death meanwhile.
  std::map<std::string, std::string> cancelled_by_patient;
  // Appointments booked (appointment id -> patient id): for a patient who ends alive they must
  // end SCHEDULED unless the patient cancelled them; for one who ends dead, CANCELLED.
  std::map<std::string, std::string> booked;
};

struct Consistency {
  int patients_checked = 0;
  int deceased = 0;
  int violations = 0;
  // The first few violations, described.
  std::vector<std::string> examples;
  // True when a service could not be asked; the counts are then incomplete.
  bool incomplete = false;
};

Consistency CheckConsistency(hospital::patients::v1::PatientsService::Stub& patients,
                             hospital::morgue::v1::MorgueService::Stub& morgue,
                             hospital::appointments::v1::AppointmentsService::Stub& appointments,
                             const std::vector<std::string>& patient_ids,
                             const std::set<std::string>& acknowledged_deaths,
                             const UserActions& user_actions = {});

}  // namespace fault_bench

#endif  // HOSPITAL_BENCH_FAULT_BENCH_CONSISTENCY_H_
