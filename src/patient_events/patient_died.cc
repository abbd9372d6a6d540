#include "patient_events/patient_died.h"

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "server_kit/rpc_support.h"

namespace patient_events {

absl::StatusOr<PatientDied> DecodePatientDied(const messaging::InboundEvent& event) {
  hospital::patients::v1::PatientDied message;
  if (!message.ParseFromString(event.payload)) {
    return absl::InvalidArgumentError("payload: not a hospital.patients.v1.PatientDied");
  }
  if (message.event_id() != event.event_id) {
    return absl::InvalidArgumentError(absl::StrCat("event_id: the payload says \"",
                                                   message.event_id(), "\", the message id is \"",
                                                   event.event_id, "\""));
  }
  RETURN_IF_ERROR(server_kit::ValidateId("event_id", message.event_id()));
  RETURN_IF_ERROR(server_kit::ValidateId("patient_id", message.patient_id()));
  RETURN_IF_ERROR(server_kit::ValidateText("cause", message.cause(), 1, 500));
  PatientDied died;
  ASSIGN_OR_RETURN(died.time_of_death,
                   server_kit::ValidateTimestamp("time_of_death", message.has_time_of_death(),
                                                 message.time_of_death()));
  ASSIGN_OR_RETURN(died.record_time,
                   server_kit::ValidateTimestamp("record_time", message.has_record_time(),
                                                 message.record_time()));
  died.event_id = message.event_id();
  died.patient_id = message.patient_id();
  died.cause = message.cause();
  return died;
}

}  // namespace patient_events
