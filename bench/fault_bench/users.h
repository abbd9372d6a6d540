// The people using the system while deaths are recorded, one action each: a clerk releases a
// body, a patient cancels one of their appointments or books a new one. What the services
// acknowledge goes into UserActions (consistency.h), which the end-of-run check holds them to;
// what they refuse is only counted (refusing is their right while a death is unsettled).
#ifndef HOSPITAL_BENCH_FAULT_BENCH_USERS_H_
#define HOSPITAL_BENCH_FAULT_BENCH_USERS_H_

#include <string>

#include "absl/time/time.h"
#include "fault_bench/consistency.h"
#include "hospital/appointments/v1/appointments.grpc.pb.h"
#include "hospital/morgue/v1/morgue.grpc.pb.h"

namespace fault_bench {

enum class ActionOutcome {
  kNothingToActOn,  // No admission to release yet, no appointment left to cancel.
  kAcknowledged,
  kRefused,
};

// Releases the body of `patient_id` to a funeral home, if the morgue has admitted it.
ActionOutcome ReleaseBody(hospital::morgue::v1::MorgueService::Stub& morgue,
                          const std::string& patient_id, UserActions& acknowledged);

// Cancels one of the patient's appointments with `reason`: a scheduled one, or one a death
// cancelled (the patient may not know yet); either way the patient's own cancellation must
// stand if the death is undone.
ActionOutcome CancelOwnAppointment(hospital::appointments::v1::AppointmentsService::Stub& stub,
                                   const std::string& patient_id, const std::string& reason,
                                   UserActions& acknowledged);

// Books an appointment for the patient at `when`.
ActionOutcome BookAppointment(hospital::appointments::v1::AppointmentsService::Stub& stub,
                              const std::string& patient_id, absl::Time when,
                              UserActions& acknowledged);

}  // namespace fault_bench

#endif  // HOSPITAL_BENCH_FAULT_BENCH_USERS_H_
