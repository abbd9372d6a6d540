// The seam where the integration patterns plug into the patients service: PatientsService
// validates a RecordDeath request and hands it to the DeathWorkflow of --death_workflow, built by
// the pattern's module (src/integration/<pattern>/, chosen in src/integration/producer_factory.h).
// Each pattern decides how the morgue and the appointments service learn of the death; what they
// share is the local record of it (PatientsRepository) and how a death already standing is
// answered (below).
#ifndef HOSPITAL_SRC_PATIENTS_DEATH_WORKFLOW_H_
#define HOSPITAL_SRC_PATIENTS_DEATH_WORKFLOW_H_

#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hospital/patients/v1/patients.pb.h"
#include "patients/patients_repository.h"

namespace patients {

// A validated request to record a death.
struct DeathRequest {
  std::string patient_id;
  absl::Time time_of_death;
  std::string cause;
};

class DeathWorkflow {
 public:
  virtual ~DeathWorkflow() = default;
  // Records the death; see PatientsService.RecordDeath in patients.proto for the contract.
  // `parent_deadline` is the incoming call's deadline.
  virtual absl::StatusOr<v1::RecordDeathResponse> RecordDeath(const DeathRequest& request,
                                                              absl::Time parent_deadline) = 0;
};

// The answer to a RecordDeath that found the patient's death already standing (any kind but
// kStarted): the stored response marked replayed, or ABORTED (another request is recording it)
// or UNAVAILABLE (an earlier attempt is still being undone). Counts it in `deaths` by result.
absl::StatusOr<v1::RecordDeathResponse> AnswerStandingDeath(
    BeginDeathResult& standing, const std::string& patient_id,
    prometheus::Family<prometheus::Counter>& deaths);

// The first step of every pattern that answers once the death is committed here (all but
// sync): one transaction records the death as COMPLETED (RecordDeathWithEvent; with a
// PatientDied event in the outbox when `with_event`), under a fresh workflow id.
struct CommittedDeath {
  // False: the death was already standing and `response` is the answer to it (counted).
  bool new_death = false;
  v1::RecordDeathResponse response;
};
// An error (counted as "error" in `deaths`) changed nothing; so does a standing death (answered
// by AnswerStandingDeath). A new death is left for the caller to count, by how it ended.
absl::StatusOr<CommittedDeath> CommitDeath(PatientsRepository& repository,
                                           const DeathRequest& request, bool with_event,
                                           absl::Time now,
                                           prometheus::Family<prometheus::Counter>& deaths);

}  // namespace patients

#endif  // HOSPITAL_SRC_PATIENTS_DEATH_WORKFLOW_H_
