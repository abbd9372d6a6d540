#include "appointments/patient_died_handler.h"

#include "absl/strings/str_cat.h"
#include "appointments/appointments_repository.h"
#include "base/status.h"
#include "patient_events/patient_died.h"

namespace appointments {

absl::Status PatientDiedHandler::Apply(server_kit::Database::Session& session,
                                       const messaging::InboundEvent& event, absl::Time now) {
  ASSIGN_OR_RETURN(const patient_events::PatientDied died,
                   patient_events::DecodePatientDied(event));
  ASSIGN_OR_RETURN(const bool undone, AppointmentsRepository::WasUndone(session, died.event_id));
  if (undone) {
    return absl::FailedPreconditionError(absl::StrCat(
        "event_id: \"", died.event_id, "\" is a workflow whose cancellations were undone"));
  }
  PatientCancellation result;
  return AppointmentsRepository::CancelForPatientIn(session, died.patient_id, died.event_id,
                                                    "patient deceased", /*patient_deceased=*/true,
                                                    now, result);
}

}  // namespace appointments
