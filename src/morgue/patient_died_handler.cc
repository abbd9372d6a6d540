#include "morgue/patient_died_handler.h"

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "morgue/morgue_repository.h"
#include "patient_events/patient_died.h"

namespace morgue {

absl::Status PatientDiedHandler::Apply(server_kit::Database::Session& session,
                                       const messaging::InboundEvent& event, absl::Time now) {
  ASSIGN_OR_RETURN(const patient_events::PatientDied died,
                   patient_events::DecodePatientDied(event));
  ASSIGN_OR_RETURN(const bool cancelled, MorgueRepository::WasCancelled(session, died.event_id));
  if (cancelled) {
    return absl::FailedPreconditionError(absl::StrCat(
        "event_id: \"", died.event_id, "\" is a workflow whose admission was cancelled"));
  }
  AdmitResult result;
  return MorgueRepository::AdmitIn(session, died.patient_id, died.event_id, died.time_of_death,
                                   died.cause, Confirmation::kConfirmed, now, result);
}

}  // namespace morgue
