// The patients service's storage, in its own SQLite database: patients, the death workflows
// that record deaths (one row per attempt), and the compensations still owed to downstream
// services, the confirmations owed to the morgue by completed workflows, and the outbox of
// events to publish. Every method is one transaction.
#ifndef HOSPITAL_SRC_PATIENTS_PATIENTS_REPOSITORY_H_
#define HOSPITAL_SRC_PATIENTS_PATIENTS_REPOSITORY_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hospital/patients/v1/events.pb.h"
#include "hospital/patients/v1/patients.pb.h"
#include "patients/shared_schema.h"
#include "server_kit/database.h"

namespace patients {

namespace v1 = hospital::patients::v1;

// The schema of each engine (server_kit::Schema).
const server_kit::Schema& Migrations();

// Where PatientDied events are published (events.proto).
inline constexpr char kPatientDiedSubject[] = "hospital.patients.v1.patient_died";

// States of a death workflow.
enum class WorkflowState {
  kPending = 1,                          // Patient marked deceased; downstream calls under way.
  kCompleted = kCompletedWorkflowState,  // Both downstreams confirmed; `result` holds it.
  kCompensating = 3,  // A downstream failed; the patient is alive again; undo calls owed.
  kCompensated = 4,   // Every undo call succeeded.
};

// The undo calls a failed workflow owes.
enum class CompensationAction { kCancelAdmission, kRestoreAppointments };
const char* CompensationActionName(CompensationAction action);

struct DeathWorkflowRow {
  std::string workflow_id;
  std::string patient_id;
  absl::Time time_of_death;
  std::string cause;
};

// Who drives a workflow until when. Replicas of the patients service share one database; a
// workflow's calls are made by the owner of a valid claim only, so that two replicas never send
// the same undo call or roll the same workflow forward at once. A claim lapses at `expires`
// (the owner died, or froze): then another may take it. Lapsed claims are safe to take over:
// every downstream call carries the workflow id and is idempotent, and a workflow leaves PENDING
// only once, whoever gets there first.
struct WorkflowClaim {
  std::string owner;  // The claiming process (SynchronousDeathWorkflowOptions::owner).
  absl::Time expires;
};

// What BeginDeath found.
struct BeginDeathResult {
  enum class Kind {
    kStarted,              // A new PENDING workflow; `patient` is now DECEASED.
    kAlreadyRecorded,      // A COMPLETED workflow exists; `recorded` is its response.
    kInProgress,           // Another workflow for the patient is PENDING.
    kCompensationPending,  // An earlier attempt is still being undone.
  };
  Kind kind = Kind::kStarted;
  v1::Patient patient;
  v1::RecordDeathResponse recorded;
};

struct DueCompensation {
  std::string workflow_id;
  std::string patient_id;
  CompensationAction action;
  int attempts = 0;
};

// A completed workflow's confirmation of its provisional morgue admission, not yet acknowledged.
struct DueConfirmation {
  std::string workflow_id;
  std::string patient_id;
  int attempts = 0;
};

// Patients in id order; the next page starts after `next_position`, a patient id.
using PatientPage = server_kit::Page<v1::Patient>;

class PatientsRepository final {
 public:
  explicit PatientsRepository(server_kit::Database& database) : database_(database) {}

  // ALREADY_EXISTS if the id is taken.
  absl::StatusOr<v1::Patient> Create(const v1::Patient& patient, absl::Time now);
  // NOT_FOUND if unknown.
  absl::StatusOr<v1::Patient> Get(const std::string& patient_id);
  absl::StatusOr<PatientPage> List(const std::string& after_id, int limit,
                                   v1::PatientStatus status);
  // NOT_FOUND if unknown.
  absl::StatusOr<v1::Patient> UpdateContact(const std::string& patient_id,
                                            const v1::ContactDetails& contact, absl::Time now);

  // Starts a death workflow, claimed by `claim`, unless one stands (see BeginDeathResult).
  // NOT_FOUND if the patient is unknown; INVALID_ARGUMENT if the death precedes the date of
  // birth.
  absl::StatusOr<BeginDeathResult> BeginDeath(const std::string& patient_id,
                                              const std::string& workflow_id,
                                              absl::Time time_of_death, const std::string& cause,
                                              absl::Time now, const WorkflowClaim& claim);
  // Claims the workflow for `claim.owner` until `claim.expires`, unless another owner's claim
  // is still valid at `now`. True if claimed (renewed, when it was the owner's already); false
  // if another owner holds it, or there is no such workflow.
  absl::StatusOr<bool> ClaimWorkflow(const std::string& workflow_id, const WorkflowClaim& claim,
                                     absl::Time now);
  // The asynchronous death, in one transaction: the same checks as BeginDeath; then the patient
  // is DECEASED, a COMPLETED workflow `event_id` stores the response (downstream_state
  // DOWNSTREAM_PENDING, `recorded`), and a PatientDied event is appended to the outbox. A
  // standing death gives kAlreadyRecorded (its response), kInProgress or kCompensationPending
  // as BeginDeath does, and nothing changes.
  // With `with_event` false no event is appended: another process reads completed workflows
  // from this database itself (the shared-database batch job, src/integration/shared_db_batch).
  absl::StatusOr<BeginDeathResult> RecordDeathWithEvent(const std::string& patient_id,
                                                        const std::string& event_id,
                                                        absl::Time time_of_death,
                                                        const std::string& cause, absl::Time now,
                                                        bool with_event = true);
  // PENDING -> COMPLETED, storing the response, with the confirmation of the morgue's
  // provisional admission owed, due now. FAILED_PRECONDITION if not PENDING.
  absl::Status CompleteDeath(const std::string& workflow_id,
                             const v1::RecordDeathResponse& response, absl::Time now);
  // PENDING -> COMPENSATING: the patient is ALIVE again and both undo calls are owed, due now.
  // FAILED_PRECONDITION if not PENDING.
  absl::Status BeginCompensation(const std::string& workflow_id, const std::string& failure,
                                 absl::Time now);
  // Marks one undo call done; when none is left, the workflow is COMPENSATED.
  absl::Status CompensationDone(const std::string& workflow_id, CompensationAction action,
                                absl::Time now);
  // Records a failed undo call and when to try it again.
  absl::Status CompensationFailed(const std::string& workflow_id, CompensationAction action,
                                  const std::string& error, absl::Time next_attempt);
  // Undo calls due by `now`, oldest first, at most `limit`.
  absl::StatusOr<std::vector<DueCompensation>> DueCompensations(absl::Time now, int limit);
  // Undo calls not yet done.
  absl::StatusOr<int> PendingCompensationCount();
  // Marks the owed confirmation acknowledged (or found impossible).
  absl::Status ConfirmationDone(const std::string& workflow_id, absl::Time now);
  // Records a failed confirmation and when to try it again.
  absl::Status ConfirmationFailed(const std::string& workflow_id, const std::string& error,
                                  absl::Time next_attempt);
  // Confirmations due by `now`, oldest first, at most `limit`.
  absl::StatusOr<std::vector<DueConfirmation>> DueConfirmations(absl::Time now, int limit);
  // Confirmations not yet acknowledged.
  absl::StatusOr<int> PendingConfirmationCount();
  // PENDING workflows last changed before `older_than`.
  absl::StatusOr<std::vector<DeathWorkflowRow>> PendingWorkflows(absl::Time older_than);
  // Whether the workflow is still PENDING (a snapshot of pending workflows goes stale as soon as
  // a request completes one).
  absl::StatusOr<bool> IsPending(const std::string& workflow_id);

 private:
  server_kit::Database& database_;
};

}  // namespace patients

#endif  // HOSPITAL_SRC_PATIENTS_PATIENTS_REPOSITORY_H_
