#include "patients/patients_service.h"

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "resilience/grpc_call.h"
#include "server_kit/rpc_support.h"
#include "server_kit/serve.h"

namespace patients {
namespace {

// The earliest date of birth accepted: older dates are typing errors.
constexpr int kEarliestBirthYear = 1850;

}  // namespace

absl::Status ValidateContact(const v1::ContactDetails& contact) {
  if (contact.phone().size() > 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("contact.phone: must be at most 32 characters, got ", contact.phone().size()));
  }
  for (std::size_t i = 0; i < contact.phone().size(); ++i) {
    const char c = contact.phone()[i];
    if (!((c >= '0' && c <= '9') || c == ' ' || c == '+' || c == '-' || c == '(' || c == ')')) {
      // The value is not repeated: error messages are logged, and a phone number is personal.
      return absl::InvalidArgumentError(absl::StrCat(
          "contact.phone: may hold only digits, spaces and \"+-()\"; byte ", i, " is not one"));
    }
  }
  if (!contact.email().empty()) {
    if (auto s = server_kit::ValidateText("contact.email", contact.email(), 3, 254); !s.ok()) {
      return s;
    }
    const std::size_t at = contact.email().find('@');
    if (at == std::string::npos || at == 0 || at + 1 == contact.email().size() ||
        contact.email().find('@', at + 1) != std::string::npos ||
        contact.email().find_first_of(" \t\n") != std::string::npos) {
      return absl::InvalidArgumentError(
          "contact.email: not an e-mail address (one \"@\" with text on both sides, no spaces)");
    }
  }
  return server_kit::ValidateText("contact.address", contact.address(), 0, 500);
}

absl::Status ValidateDateOfBirth(const std::string& date_of_birth, absl::Time now) {
  absl::Time parsed;
  std::string error;
  if (date_of_birth.size() != 10 ||
      !absl::ParseTime("%Y-%m-%d", date_of_birth, absl::UTCTimeZone(), &parsed, &error) ||
      absl::FormatTime("%Y-%m-%d", parsed, absl::UTCTimeZone()) != date_of_birth) {
    // Dates of birth are personal: the messages (which are logged) never repeat the value.
    return absl::InvalidArgumentError("date_of_birth: must be a date as YYYY-MM-DD");
  }
  if (parsed > now) return absl::InvalidArgumentError("date_of_birth: is in the future");
  if (absl::ToCivilYear(parsed, absl::UTCTimeZone()).year() < kEarliestBirthYear) {
    return absl::InvalidArgumentError(
        absl::StrCat("date_of_birth: is before ", kEarliestBirthYear, " (a typing error?)"));
  }
  return absl::OkStatus();
}

PatientsService::PatientsService(PatientsRepository& repository, DeathWorkflow& death_workflow,
                                 base::Clock& clock, prometheus::Registry& metrics)
    : repository_(repository),
      death_workflow_(death_workflow),
      clock_(clock),
      created_(prometheus::BuildCounter()
                   .Name("hospital_patients_created_total")
                   .Help("Patients registered.")
                   .Register(metrics)
                   .Add({})) {}

grpc::Status PatientsService::CreatePatient(grpc::ServerContext* context,
                                            const v1::CreatePatientRequest* request,
                                            v1::Patient* response) {
  return server_kit::Serve(context, response, [&]() -> absl::StatusOr<v1::Patient> {
    v1::Patient patient;
    patient.set_patient_id(request->patient_id().empty() ? server_kit::NewId()
                                                         : request->patient_id());
    RETURN_IF_ERROR(server_kit::ValidateId("patient_id", patient.patient_id()));
    RETURN_IF_ERROR(server_kit::ValidateText("given_name", request->given_name(), 1, 100));
    RETURN_IF_ERROR(server_kit::ValidateText("family_name", request->family_name(), 1, 100));
    const absl::Time now = clock_.Now();
    RETURN_IF_ERROR(ValidateDateOfBirth(request->date_of_birth(), now));
    RETURN_IF_ERROR(ValidateContact(request->contact()));
    patient.set_given_name(request->given_name());
    patient.set_family_name(request->family_name());
    patient.set_date_of_birth(request->date_of_birth());
    *patient.mutable_contact() = request->contact();
    ASSIGN_OR_RETURN(v1::Patient created, repository_.Create(patient, now));
    created_.Increment();
    return created;
  });
}

grpc::Status PatientsService::GetPatient(grpc::ServerContext* context,
                                         const v1::GetPatientRequest* request,
                                         v1::Patient* response) {
  return server_kit::Serve(context, response, [&]() -> absl::StatusOr<v1::Patient> {
    RETURN_IF_ERROR(server_kit::ValidateId("patient_id", request->patient_id()));
    return repository_.Get(request->patient_id());
  });
}

grpc::Status PatientsService::ListPatients(grpc::ServerContext* context,
                                           const v1::ListPatientsRequest* request,
                                           v1::ListPatientsResponse* response) {
  return server_kit::Serve(context, response, [&]() -> absl::StatusOr<v1::ListPatientsResponse> {
    ASSIGN_OR_RETURN(const int page_size,
                     server_kit::ValidatePageSize("page_size", request->page_size()));
    ASSIGN_OR_RETURN(const std::string after,
                     server_kit::DecodePageToken("page_token", request->page_token()));
    if (!v1::PatientStatus_IsValid(request->status())) {
      return absl::InvalidArgumentError(absl::StrCat("status: unknown value ", request->status()));
    }
    ASSIGN_OR_RETURN(PatientPage page, repository_.List(after, page_size, request->status()));
    v1::ListPatientsResponse listed;
    server_kit::MovePage(page, listed.mutable_patients(), listed.mutable_next_page_token());
    return listed;
  });
}

grpc::Status PatientsService::UpdateContactDetails(grpc::ServerContext* context,
                                                   const v1::UpdateContactDetailsRequest* request,
                                                   v1::Patient* response) {
  return server_kit::Serve(context, response, [&]() -> absl::StatusOr<v1::Patient> {
    RETURN_IF_ERROR(server_kit::ValidateId("patient_id", request->patient_id()));
    RETURN_IF_ERROR(ValidateContact(request->contact()));
    return repository_.UpdateContact(request->patient_id(), request->contact(), clock_.Now());
  });
}

grpc::Status PatientsService::RecordDeath(grpc::ServerContext* context,
                                          const v1::RecordDeathRequest* request,
                                          v1::RecordDeathResponse* response) {
  return server_kit::Serve(context, response, [&]() -> absl::StatusOr<v1::RecordDeathResponse> {
    RETURN_IF_ERROR(server_kit::ValidateId("patient_id", request->patient_id()));
    ASSIGN_OR_RETURN(const absl::Time time_of_death,
                     server_kit::ValidateTimestamp("time_of_death", request->has_time_of_death(),
                                                   request->time_of_death()));
    if (time_of_death > clock_.Now()) {
      return absl::InvalidArgumentError("time_of_death: is in the future");
    }
    RETURN_IF_ERROR(server_kit::ValidateText("cause", request->cause(), 1, 500));
    return death_workflow_.RecordDeath({request->patient_id(), time_of_death, request->cause()},
                                       resilience::DeadlineOf(*context));
  });
}

}  // namespace patients
