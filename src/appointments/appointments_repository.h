// The appointments service's storage: appointments and the patient-wide cancellations made by
// death workflows, in the service's own SQLite database. Every method is one transaction.
#ifndef HOSPITAL_SRC_APPOINTMENTS_APPOINTMENTS_REPOSITORY_H_
#define HOSPITAL_SRC_APPOINTMENTS_APPOINTMENTS_REPOSITORY_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hospital/appointments/v1/appointments.pb.h"
#include "server_kit/database.h"

namespace appointments {

using hospital::appointments::v1::Appointment;
using hospital::appointments::v1::AppointmentStatus;

// The schema of each engine (server_kit::Schema).
const server_kit::Schema& Migrations();

struct NewAppointment {
  std::string appointment_id;
  std::string patient_id;
  absl::Time scheduled_time;
  std::string clinician;
  std::string purpose;
};

// A patient's appointments by time; `next_position` is "<scheduled time in Unix microseconds>/
// <appointment id>".
using AppointmentPage = server_kit::Page<Appointment>;

struct PatientCancellation {
  std::vector<Appointment> cancelled;
  bool replayed = false;
};

class AppointmentsRepository final {
 public:
  explicit AppointmentsRepository(server_kit::Database& database) : database_(database) {}

  // FAILED_PRECONDITION if the patient is recorded as deceased; ALREADY_EXISTS if the id is taken.
  absl::StatusOr<Appointment> Schedule(const NewAppointment& appointment, absl::Time now);
  // NOT_FOUND if there is no such appointment.
  absl::StatusOr<Appointment> Get(const std::string& appointment_id);
  // A patient's appointments after `position` (from a previous page; empty for the first), by
  // scheduled time then id. INVALID_ARGUMENT if `position` is not one this method returned.
  absl::StatusOr<AppointmentPage> List(const std::string& patient_id, const std::string& position,
                                       int limit, AppointmentStatus status);
  // Cancels a scheduled future appointment; an already cancelled one is returned unchanged
  // (`changed` false). NOT_FOUND, or FAILED_PRECONDITION if it has taken place.
  absl::StatusOr<Appointment> Cancel(bool& changed, const std::string& appointment_id,
                                     const std::string& reason, absl::Time now);
  // Cancels the patient's future appointments on behalf of `workflow_id` (see the proto).
  absl::StatusOr<PatientCancellation> CancelForPatient(const std::string& patient_id,
                                                       const std::string& workflow_id,
                                                       const std::string& reason,
                                                       bool patient_deceased, absl::Time now);
  // CancelForPatient's work inside the caller's transaction (the event consumer's).
  static absl::Status CancelForPatientIn(server_kit::Database::Session& session,
                                         const std::string& patient_id,
                                         const std::string& workflow_id, const std::string& reason,
                                         bool patient_deceased, absl::Time now,
                                         PatientCancellation& result);
  // Whether `workflow_id`'s cancellation was undone (CancelForPatient of it would fail with
  // ABORTED).
  static absl::StatusOr<bool> WasUndone(server_kit::Database::Session& session,
                                        const std::string& workflow_id);
  // Undoes CancelForPatient of `workflow_id`; returns the appointments scheduled again.
  absl::StatusOr<std::vector<Appointment>> RestoreForPatient(const std::string& patient_id,
                                                             const std::string& workflow_id,
                                                             absl::Time now);

 private:
  server_kit::Database& database_;
};

}  // namespace appointments

#endif  // HOSPITAL_SRC_APPOINTMENTS_APPOINTMENTS_REPOSITORY_H_
