#include "fault_bench/consistency.h"

#include <functional>
#include <map>
#include <set>
#include <string>

#include "absl/status/statusor.h"
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

// The morgue's admissions, by patient.
struct MorgueState {
  std::map<std::string, int> admissions;  // Not cancelled (the unique index allows 1 at most).
  std::set<std::string> provisional;      // ADMITTED and not yet confirmed.
  std::set<std::string> released;
};

// Every admission, page by page; the error of a failed page.
absl::StatusOr<MorgueState> ReadMorgue(morgue_v1::MorgueService::Stub& morgue) {
  MorgueState state;
  morgue_v1::ListAdmissionsRequest list;
  list.set_page_size(500);
  do {
    morgue_v1::ListAdmissionsResponse page;
    if (const grpc::Status listed = morgue.ListAdmissions(Context().get(), list, &page);
        !listed.ok()) {
      return absl::UnavailableError(
          absl::StrCat("morgue: ListAdmissions failed: ", listed.error_message()));
    }
    for (const auto& admission : page.admissions()) {
      if (admission.status() != morgue_v1::CANCELLED) ++state.admissions[admission.patient_id()];
      if (admission.status() == morgue_v1::RELEASED) state.released.insert(admission.patient_id());
      if (admission.status() == morgue_v1::ADMITTED && admission.provisional()) {
        state.provisional.insert(admission.patient_id());
      }
    }
    list.set_page_token(page.next_page_token());
  } while (!list.page_token().empty());
  return state;
}

// One patient's appointments, told apart: scheduled, cancelled by a death; the bookings and
// own cancellations the users were acknowledged are checked against what stands.
struct Visits {
  int scheduled = 0;
  int cancelled = 0;  // By a death: the patient's own cancellations are theirs to make.
};
Visits CheckVisits(const std::string& id, bool dead,
                   const appointments_v1::ListAppointmentsResponse& visits,
                   const UserActions& user_actions,
                   const std::function<void(const std::string&)>& violation) {
  Visits counted;
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
    (visit.status() == appointments_v1::SCHEDULED ? counted.scheduled : counted.cancelled) += 1;
    const bool booked_in_load = user_actions.booked.count(visit.appointment_id()) != 0;
    if (booked_in_load && !dead && visit.status() != appointments_v1::SCHEDULED) {
      violation(absl::StrCat(id, ": alive, but the booking ", visit.appointment_id(),
                             " it was given is ",
                             appointments_v1::AppointmentStatus_Name(visit.status())));
    }
  }
  return counted;
}

// The rules that tie one patient's state in the three services together.
void CheckPatient(const std::string& id, bool dead, const MorgueState& morgue, const Visits& visits,
                  const std::set<std::string>& acknowledged_deaths, const UserActions& user_actions,
                  const std::function<void(const std::string&)>& violation) {
  const auto found = morgue.admissions.find(id);
  const int admitted = found == morgue.admissions.end() ? 0 : found->second;
  if (user_actions.released.count(id) != 0 && (!dead || morgue.released.count(id) == 0)) {
    violation(absl::StrCat(id, ": its body was released, but the patient is ",
                           dead ? "dead with the admission not RELEASED" : "alive"));
  }
  if (admitted > 1) violation(absl::StrCat(id, ": ", admitted, " admissions"));
  if (dead && admitted == 0) violation(absl::StrCat(id, ": dead but not in the morgue"));
  if (dead && morgue.provisional.count(id) != 0) {
    violation(absl::StrCat(id, ": dead, but its admission was never confirmed"));
  }
  if (dead && visits.scheduled > 0) {
    violation(absl::StrCat(id, ": dead with ", visits.scheduled, " scheduled appointments"));
  }
  if (!dead && admitted > 0) violation(absl::StrCat(id, ": alive but in the morgue"));
  if (!dead && visits.cancelled > 0) {
    violation(absl::StrCat(id, ": alive with ", visits.cancelled, " cancelled appointments"));
  }
  if (!dead && acknowledged_deaths.count(id) != 0) {
    violation(absl::StrCat(id, ": RecordDeath succeeded but the patient is alive"));
  }
}

}  // namespace

Consistency CheckConsistency(patients_v1::PatientsService::Stub& patients,
                             morgue_v1::MorgueService::Stub& morgue,
                             appointments_v1::AppointmentsService::Stub& appointments,
                             const std::vector<std::string>& patient_ids,
                             const std::set<std::string>& acknowledged_deaths,
                             const UserActions& user_actions) {
  Consistency result;
  auto incomplete = [&result](const std::string& why) {
    result.incomplete = true;
    result.examples.push_back(why);
    return result;
  };
  const std::function<void(const std::string&)> violation = [&](const std::string& what) {
    ++result.violations;
    if (result.examples.size() < 5) result.examples.push_back(what);
  };
  const absl::StatusOr<MorgueState> morgue_state = ReadMorgue(morgue);
  if (!morgue_state.ok()) return incomplete(std::string(morgue_state.status().message()));
  for (const std::string& id : patient_ids) {
    patients_v1::GetPatientRequest get;
    get.set_patient_id(id);
    patients_v1::Patient patient;
    if (const grpc::Status got = patients.GetPatient(Context().get(), get, &patient); !got.ok()) {
      return incomplete(absl::StrCat("patients: GetPatient failed: ", got.error_message()));
    }
    appointments_v1::ListAppointmentsRequest booked;
    booked.set_patient_id(id);
    booked.set_page_size(500);
    appointments_v1::ListAppointmentsResponse visits;
    if (const grpc::Status listed = appointments.ListAppointments(Context().get(), booked, &visits);
        !listed.ok()) {
      return incomplete(
          absl::StrCat("appointments: ListAppointments failed: ", listed.error_message()));
    }
    ++result.patients_checked;
    const bool dead = patient.status() == patients_v1::DECEASED;
    if (dead) ++result.deceased;
    const Visits counted = CheckVisits(id, dead, visits, user_actions, violation);
    CheckPatient(id, dead, *morgue_state, counted, acknowledged_deaths, user_actions, violation);
  }
  return result;
}

}  // namespace fault_bench
