#include "fault_bench/consistency.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace fault_bench {
namespace {

namespace patients_v1 = hospital::patients::v1;
namespace morgue_v1 = hospital::morgue::v1;
namespace appointments_v1 = hospital::appointments::v1;

std::unique_ptr<grpc::ClientContext> Context() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  return context;
}

}  // namespace

Consistency CheckConsistency(patients_v1::PatientsService::Stub& patients,
                             morgue_v1::MorgueService::Stub& morgue,
                             appointments_v1::AppointmentsService::Stub& appointments,
                             const std::vector<std::string>& patient_ids,
                             const std::set<std::string>& acknowledged_deaths,
                             const UserActions& user_actions) {
  Consistency result;
  auto violation = [&](const std::string& what) {
    ++result.violations;
    if (result.examples.size() < 5) result.examples.push_back(what);
  };
  // Admissions per patient, from the full list (the unique index should make this 1 at most).
  std::map<std::string, int> admissions;
  std::set<std::string> provisional;
  std::set<std::string> released;
  morgue_v1::ListAdmissionsRequest list;
  list.set_page_size(500);
  do {
    morgue_v1::ListAdmissionsResponse page;
    if (const grpc::Status listed = morgue.ListAdmissions(Context().get(), list, &page);
        !listed.ok()) {
      result.incomplete = true;
      result.examples.push_back(
          absl::StrCat("morgue: ListAdmissions failed: ", listed.error_message()));
      return result;
    }
    for (const auto& admission : page.admissions()) {
      if (admission.status() != morgue_v1::CANCELLED) ++admissions[admission.patient_id()];
      if (admission.status() == morgue_v1::RELEASED) released.insert(admission.patient_id());
      if (admission.status() == morgue_v1::ADMITTED && admission.provisional()) {
        provisional.insert(admission.patient_id());
      }
    }
    list.set_page_token(page.next_page_token());
  } while (!list.page_token().empty());

  for (const std::string& id : patient_ids) {
    patients_v1::GetPatientRequest get;
    get.set_patient_id(id);
    patients_v1::Patient patient;
    appointments_v1::ListAppointmentsRequest booked;
    booked.set_patient_id(id);
    booked.set_page_size(500);
    appointments_v1::ListAppointmentsResponse visits;
    if (const grpc::Status got = patients.GetPatient(Context().get(), get, &patient); !got.ok()) {
      result.incomplete = true;
      result.examples.push_back(absl::StrCat("patients: GetPatient failed: ", got.error_message()));
      return result;
    }
    if (const grpc::Status listed = appointments.ListAppointments(Context().get(), booked, &visits);
        !listed.ok()) {
      result.incomplete = true;
      result.examples.push_back(
          absl::StrCat("appointments: ListAppointments failed: ", listed.error_message()));
      return result;
    }
    ++result.patients_checked;
    const bool dead = patient.status() == patients_v1::DECEASED;
    if (dead) ++result.deceased;
    const int admitted = admissions.count(id) ? admissions[id] : 0;
    int scheduled = 0;
    int cancelled = 0;  // By a death: the patient's own cancellations are theirs to make.
    for (const auto& visit : visits.appointments()) {
      const auto own = user_actions.cancelled_by_patient.find(visit.appointment_id());
      if (own != user_actions.cancelled_by_patient.end()) {
        if (visit.status() != appointments_v1::CANCELLED || visit.cancel_reason() != own->second) {
          violation(absl::StrCat(id, ": the patient's own cancellation of ", visit.appointment_id(),
                                 " was lost (",
                                 appointments_v1::AppointmentStatus_Name(visit.status()),
                                 ", reason \"", visit.cancel_reason(), "\")"));
        }
        continue;
      }
      (visit.status() == appointments_v1::SCHEDULED ? scheduled : cancelled) += 1;
      const bool booked_in_load = user_actions.booked.count(visit.appointment_id()) != 0;
      if (booked_in_load && !dead && visit.status() != appointments_v1::SCHEDULED) {
        violation(absl::StrCat(id, ": alive, but the booking ", visit.appointment_id(),
                               " it was given is ",
                               appointments_v1::AppointmentStatus_Name(visit.status())));
      }
    }
    if (user_actions.released.count(id) != 0 && (!dead || released.count(id) == 0)) {
      violation(absl::StrCat(id, ": its body was released, but the patient is ",
                             dead ? "dead with the admission not RELEASED" : "alive"));
    }
    if (admitted > 1) violation(absl::StrCat(id, ": ", admitted, " admissions"));
    if (dead && admitted == 0) violation(absl::StrCat(id, ": dead but not in the morgue"));
    if (dead && provisional.count(id) != 0) {
      violation(absl::StrCat(id, ": dead, but its admission was never confirmed"));
    }
    if (dead && scheduled > 0) {
      violation(absl::StrCat(id, ": dead with ", scheduled, " scheduled appointments"));
    }
    if (!dead && admitted > 0) violation(absl::StrCat(id, ": alive but in the morgue"));
    if (!dead && cancelled > 0) {
      violation(absl::StrCat(id, ": alive with ", cancelled, " cancelled appointments"));
    }
    if (!dead && acknowledged_deaths.count(id) != 0) {
      violation(absl::StrCat(id, ": RecordDeath succeeded but the patient is alive"));
    }
  }
  return result;
}

}  // namespace fault_bench
