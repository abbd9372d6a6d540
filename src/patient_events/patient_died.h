// Reading a PatientDied event (protos/hospital/patients/v1/events.proto) as a consumer receives
// it, with the checks every consumer needs before acting on it. Shared by morgue and
// appointments; the patients service writes the event (patients_repository.cc).
#ifndef HOSPITAL_SRC_PATIENT_EVENTS_PATIENT_DIED_H_
#define HOSPITAL_SRC_PATIENT_EVENTS_PATIENT_DIED_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hospital/patients/v1/events.pb.h"
#include "messaging/inbox.h"

namespace patient_events {

struct PatientDied {
  std::string event_id;
  std::string patient_id;
  absl::Time time_of_death;
  std::string cause;
  absl::Time record_time;
};

// Decodes and validates `event`'s payload. INVALID_ARGUMENT naming what is wrong (an
// undecodable payload, a field out of range, an event id that differs from the message's): such
// an event can never be applied.
absl::StatusOr<PatientDied> DecodePatientDied(const messaging::InboundEvent& event);

}  // namespace patient_events

#endif  // HOSPITAL_SRC_PATIENT_EVENTS_PATIENT_DIED_H_
