// The morgue's storage: admissions and the death workflows that were undone, in the morgue's
// own SQLite database. Every method is one transaction; errors are absl::Status codes as
// mapped by server_kit::ToStatus, plus the domain errors documented per method.
#ifndef HOSPITAL_SRC_MORGUE_MORGUE_REPOSITORY_H_
#define HOSPITAL_SRC_MORGUE_MORGUE_REPOSITORY_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hospital/morgue/v1/morgue.pb.h"
#include "server_kit/database.h"

namespace morgue {

using hospital::morgue::v1::Admission;
using hospital::morgue::v1::AdmissionStatus;

// Schema migrations, in order (see server_kit::Database::Open).
// The schema of each engine (server_kit::Schema).
const server_kit::Schema& Migrations();

struct AdmitResult {
  Admission admission;
  bool already_admitted = false;
};

// How an admission is made: provisionally by a synchronous death workflow's call (it may still
// be undone, and the body cannot be released until the workflow confirms it), or confirmed
// from the start by an asynchronous workflow's event (a recorded death, never undone).
enum class Confirmation { kProvisional, kConfirmed };

struct ConfirmResult {
  Admission admission;
  bool already_confirmed = false;
};

// The error reason (server_kit::WithErrorReason) of a release refused because the admission is
// provisional.
inline constexpr std::string_view kReasonAdmissionProvisional = "ADMISSION_PROVISIONAL";

// Admissions in id order; the next page starts after `next_position`, an admission id.
using AdmissionPage = server_kit::Page<Admission>;

class MorgueRepository final {
 public:
  explicit MorgueRepository(server_kit::Database& database) : database_(database) {}

  // Admits the patient provisionally unless an admission stands (then returns it,
  // already_admitted). A cancelled admission is re-opened for the new workflow, keeping its id.
  // ABORTED if `workflow_id` was cancelled before.
  absl::StatusOr<AdmitResult> Admit(const std::string& patient_id, const std::string& workflow_id,
                                    absl::Time time_of_death, const std::string& cause,
                                    absl::Time now);
  // Admit's work inside the caller's transaction (the event consumer's), with the same errors.
  static absl::Status AdmitIn(server_kit::Database::Session& session, const std::string& patient_id,
                              const std::string& workflow_id, absl::Time time_of_death,
                              const std::string& cause, Confirmation confirmation, absl::Time now,
                              AdmitResult& result);
  // Whether `workflow_id` was cancelled (Admit of it would fail with ABORTED).
  static absl::StatusOr<bool> WasCancelled(server_kit::Database::Session& session,
                                           const std::string& workflow_id);
  // NOT_FOUND if there is no such admission.
  absl::StatusOr<Admission> GetById(const std::string& admission_id);
  absl::StatusOr<Admission> GetByPatient(const std::string& patient_id);
  // Admissions with ids after `after_id`, in id order; `status` unspecified means any.
  absl::StatusOr<AdmissionPage> List(const std::string& after_id, int limit,
                                     AdmissionStatus status);
  // NOT_FOUND, or FAILED_PRECONDITION unless the admission is ADMITTED and confirmed (the
  // error reason kReasonAdmissionProvisional when it is provisional).
  absl::StatusOr<Admission> Release(const std::string& admission_id,
                                    const std::string& funeral_home, absl::Time now);
  // Confirms the patient's provisional admission made by `workflow_id`; an admission that is
  // not provisional is returned as it is (already_confirmed). NOT_FOUND if the patient has no
  // admission; FAILED_PRECONDITION if it was cancelled or is provisional for another workflow.
  absl::StatusOr<ConfirmResult> Confirm(const std::string& patient_id,
                                        const std::string& workflow_id);
  // Undoes the admission made by `workflow_id`, if it stands; remembers the workflow either
  // way. Returns whether an admission was cancelled. FAILED_PRECONDITION if it was released.
  absl::StatusOr<bool> CancelWorkflow(const std::string& patient_id, const std::string& workflow_id,
                                      absl::Time now);

 private:
  server_kit::Database& database_;
};

}  // namespace morgue

#endif  // HOSPITAL_SRC_MORGUE_MORGUE_REPOSITORY_H_
