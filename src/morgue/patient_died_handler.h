// The morgue's part of the asynchronous death workflow: a PatientDied event admits the patient,
// exactly as AdmitDeceased with the event id as workflow id would, inside the inbox's
// transaction (messaging/inbox.h), so a redelivered event admits no one twice.
#ifndef HOSPITAL_SRC_MORGUE_PATIENT_DIED_HANDLER_H_
#define HOSPITAL_SRC_MORGUE_PATIENT_DIED_HANDLER_H_

#include "messaging/inbox.h"

namespace morgue {

// The pseudo-method fault rules match for event handling: "hospital.morgue.v1.MorgueService/*"
// faults the RPCs and the events alike.
inline constexpr char kPatientDiedFaultMethod[] =
    "/hospital.morgue.v1.MorgueService/HandlePatientDied";

class PatientDiedHandler final : public messaging::EventHandler {
 public:
  // An undecodable or invalid event, or one whose id is a workflow cancelled by the synchronous
  // saga, is rejected (INVALID_ARGUMENT, FAILED_PRECONDITION); a patient already admitted is
  // applied with no change.
  absl::Status Apply(server_kit::Database::Session& session, const messaging::InboundEvent& event,
                     absl::Time now) override;
};

}  // namespace morgue

#endif  // HOSPITAL_SRC_MORGUE_PATIENT_DIED_HANDLER_H_
