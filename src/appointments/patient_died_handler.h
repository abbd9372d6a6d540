// The appointments service's part of the asynchronous death workflow: a PatientDied event
// cancels the patient's future appointments and refuses new ones, exactly as
// CancelPatientAppointments with the event id as workflow id and patient_deceased would, inside
// the inbox's transaction (messaging/inbox.h), so a redelivered event has no second effect.
//
// The window: between the death's commit in patients and this event's commit here (milliseconds
// when all is well; the length of an outage when not), ScheduleAppointment still accepts the
// patient. Such an appointment is cancelled when the event arrives, as every appointment after
// the moment the event is applied is; an appointment whose time passed meanwhile is left as it
// is (it is in the past; the consistency checker allows it).
#ifndef HOSPITAL_SRC_APPOINTMENTS_PATIENT_DIED_HANDLER_H_
#define HOSPITAL_SRC_APPOINTMENTS_PATIENT_DIED_HANDLER_H_

#include "messaging/inbox.h"

namespace appointments {

// The pseudo-method fault rules match for event handling: a rule on
// "hospital.appointments.v1.AppointmentsService/*" faults the RPCs and the events alike.
inline constexpr char kPatientDiedFaultMethod[] =
    "/hospital.appointments.v1.AppointmentsService/HandlePatientDied";

class PatientDiedHandler final : public messaging::EventHandler {
 public:
  // An undecodable or invalid event, or one whose id is a workflow the synchronous saga undid, is
  // rejected (INVALID_ARGUMENT, FAILED_PRECONDITION).
  absl::Status Apply(server_kit::Database::Session& session, const messaging::InboundEvent& event,
                     absl::Time now) override;
};

}  // namespace appointments

#endif  // HOSPITAL_SRC_APPOINTMENTS_PATIENT_DIED_HANDLER_H_
