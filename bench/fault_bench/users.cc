#include "fault_bench/users.h"

#include "fault_bench/system.h"
#include "server_kit/rpc_support.h"

namespace fault_bench {
namespace {

namespace morgue_v1 = hospital::morgue::v1;
namespace appointments_v1 = hospital::appointments::v1;

// The reason the synchronous death workflow gives when it cancels a patient's appointments
// (integration/sync/synchronous_death_workflow.cc).
constexpr char kDeathCancelReason[] = "patient deceased";

ActionOutcome Answered(bool ok) {
  return ok ? ActionOutcome::kAcknowledged : ActionOutcome::kRefused;
}

}  // namespace

ActionOutcome ReleaseBody(morgue_v1::MorgueService::Stub& morgue, const std::string& patient_id,
                          UserActions& acknowledged) {
  morgue_v1::GetAdmissionRequest get;
  get.set_patient_id(patient_id);
  morgue_v1::Admission admission;
  if (!morgue.GetAdmission(CallContext(absl::Seconds(1)).get(), get, &admission).ok()) {
    return ActionOutcome::kNothingToActOn;
  }
  morgue_v1::ReleaseBodyRequest release;
  release.set_admission_id(admission.admission_id());
  release.set_funeral_home("Hill & Sons");
  morgue_v1::Admission released;
  const bool ok = morgue.ReleaseBody(CallContext(absl::Seconds(1)).get(), release, &released).ok();
  if (ok) acknowledged.released.insert(patient_id);
  return Answered(ok);
}

ActionOutcome CancelOwnAppointment(appointments_v1::AppointmentsService::Stub& stub,
                                   const std::string& patient_id, const std::string& reason,
                                   UserActions& acknowledged) {
  appointments_v1::ListAppointmentsRequest list;
  list.set_patient_id(patient_id);
  appointments_v1::ListAppointmentsResponse listed;
  if (!stub.ListAppointments(CallContext(absl::Seconds(1)).get(), list, &listed).ok()) {
    return ActionOutcome::kNothingToActOn;
  }
  for (const auto& appointment : listed.appointments()) {
    if (acknowledged.cancelled_by_patient.count(appointment.appointment_id()) != 0 ||
        (appointment.status() != appointments_v1::SCHEDULED &&
         appointment.cancel_reason() != kDeathCancelReason)) {
      continue;
    }
    appointments_v1::CancelAppointmentRequest cancel;
    cancel.set_appointment_id(appointment.appointment_id());
    cancel.set_reason(reason);
    appointments_v1::Appointment cancelled;
    const bool ok =
        stub.CancelAppointment(CallContext(absl::Seconds(1)).get(), cancel, &cancelled).ok();
    if (ok) acknowledged.cancelled_by_patient[appointment.appointment_id()] = reason;
    return Answered(ok);
  }
  return ActionOutcome::kNothingToActOn;
}

ActionOutcome BookAppointment(appointments_v1::AppointmentsService::Stub& stub,
                              const std::string& patient_id, absl::Time when,
                              UserActions& acknowledged) {
  appointments_v1::ScheduleAppointmentRequest book;
  book.set_patient_id(patient_id);
  book.set_clinician("Dr. Snow");
  *book.mutable_scheduled_time() = server_kit::ToProtoTime(when);
  appointments_v1::Appointment booked;
  const bool ok = stub.ScheduleAppointment(CallContext(absl::Seconds(1)).get(), book, &booked).ok();
  if (ok) acknowledged.booked[booked.appointment_id()] = patient_id;
  return Answered(ok);
}

}  // namespace fault_bench
