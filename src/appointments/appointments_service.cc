#include "appointments/appointments_service.h"

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "server_kit/rpc_support.h"
#include "server_kit/serve.h"

namespace appointments {
namespace {

prometheus::Family<prometheus::Counter>& CancelledFamily(prometheus::Registry& registry) {
  return prometheus::BuildCounter()
      .Name("hospital_appointments_cancelled_total")
      .Help("Appointments cancelled, by how: one at a time, or all of a patient's at once.")
      .Register(registry);
}

}  // namespace

AppointmentsService::AppointmentsService(AppointmentsRepository& repository, base::Clock& clock,
                                         prometheus::Registry& metrics)
    : repository_(repository),
      clock_(clock),
      scheduled_(prometheus::BuildCounter()
                     .Name("hospital_appointments_scheduled_total")
                     .Help("Appointments scheduled.")
                     .Register(metrics)
                     .Add({})),
      refused_deceased_(prometheus::BuildCounter()
                            .Name("hospital_appointments_refused_deceased_total")
                            .Help("Appointments refused because the patient is deceased.")
                            .Register(metrics)
                            .Add({})),
      cancelled_single_(CancelledFamily(metrics).Add({{"scope", "single"}})),
      cancelled_for_patient_(CancelledFamily(metrics).Add({{"scope", "patient"}})),
      restored_(prometheus::BuildCounter()
                    .Name("hospital_appointments_restored_total")
                    .Help("Appointments scheduled again when a death workflow was undone.")
                    .Register(metrics)
                    .Add({})),
      replayed_for_patient_(
          prometheus::BuildCounter()
              .Name("hospital_appointments_patient_cancellations_replayed_total")
              .Help("CancelPatientAppointments calls repeating one already applied (a retry; "
                    "answered with the original result, no second effect).")
              .Register(metrics)
              .Add({})) {}

grpc::Status AppointmentsService::ScheduleAppointment(grpc::ServerContext* context,
                                                      const v1::ScheduleAppointmentRequest* request,
                                                      Appointment* response) {
  return server_kit::Serve(context, response, [&]() -> absl::StatusOr<Appointment> {
    NewAppointment appointment;
    appointment.appointment_id =
        request->appointment_id().empty() ? server_kit::NewId() : request->appointment_id();
    RETURN_IF_ERROR(server_kit::ValidateId("appointment_id", appointment.appointment_id));
    RETURN_IF_ERROR(server_kit::ValidateId("patient_id", request->patient_id()));
    ASSIGN_OR_RETURN(appointment.scheduled_time,
                     server_kit::ValidateTimestamp("scheduled_time", request->has_scheduled_time(),
                                                   request->scheduled_time()));
    const absl::Time now = clock_.Now();
    if (appointment.scheduled_time <= now) {
      return absl::InvalidArgumentError("scheduled_time: must be in the future");
    }
    RETURN_IF_ERROR(server_kit::ValidateText("clinician", request->clinician(), 1, 100));
    RETURN_IF_ERROR(server_kit::ValidateText("purpose", request->purpose(), 0, 500));
    appointment.patient_id = request->patient_id();
    appointment.clinician = request->clinician();
    appointment.purpose = request->purpose();
    absl::StatusOr<Appointment> scheduled = repository_.Schedule(appointment, now);
    if (absl::IsFailedPrecondition(scheduled.status())) refused_deceased_.Increment();
    if (scheduled.ok()) scheduled_.Increment();
    return scheduled;
  });
}

grpc::Status AppointmentsService::GetAppointment(grpc::ServerContext* context,
                                                 const v1::GetAppointmentRequest* request,
                                                 Appointment* response) {
  return server_kit::Serve(context, response, [&]() -> absl::StatusOr<Appointment> {
    RETURN_IF_ERROR(server_kit::ValidateId("appointment_id", request->appointment_id()));
    return repository_.Get(request->appointment_id());
  });
}

grpc::Status AppointmentsService::ListAppointments(grpc::ServerContext* context,
                                                   const v1::ListAppointmentsRequest* request,
                                                   v1::ListAppointmentsResponse* response) {
  return server_kit::Serve(
      context, response, [&]() -> absl::StatusOr<v1::ListAppointmentsResponse> {
        RETURN_IF_ERROR(server_kit::ValidateId("patient_id", request->patient_id()));
        ASSIGN_OR_RETURN(const int page_size,
                         server_kit::ValidatePageSize("page_size", request->page_size()));
        ASSIGN_OR_RETURN(const std::string position,
                         server_kit::DecodePageToken("page_token", request->page_token()));
        if (!v1::AppointmentStatus_IsValid(request->status())) {
          return absl::InvalidArgumentError(
              absl::StrCat("status: unknown value ", request->status()));
        }
        ASSIGN_OR_RETURN(AppointmentPage page, repository_.List(request->patient_id(), position,
                                                                page_size, request->status()));
        v1::ListAppointmentsResponse listed;
        server_kit::MovePage(page, listed.mutable_appointments(), listed.mutable_next_page_token());
        return listed;
      });
}

grpc::Status AppointmentsService::CancelAppointment(grpc::ServerContext* context,
                                                    const v1::CancelAppointmentRequest* request,
                                                    Appointment* response) {
  return server_kit::Serve(context, response, [&]() -> absl::StatusOr<Appointment> {
    RETURN_IF_ERROR(server_kit::ValidateId("appointment_id", request->appointment_id()));
    RETURN_IF_ERROR(server_kit::ValidateText("reason", request->reason(), 1, 500));
    bool changed = false;
    ASSIGN_OR_RETURN(Appointment cancelled, repository_.Cancel(changed, request->appointment_id(),
                                                               request->reason(), clock_.Now()));
    if (changed) cancelled_single_.Increment();
    return cancelled;
  });
}

grpc::Status AppointmentsService::CancelPatientAppointments(
    grpc::ServerContext* context, const v1::CancelPatientAppointmentsRequest* request,
    v1::CancelPatientAppointmentsResponse* response) {
  return server_kit::Serve(
      context, response, [&]() -> absl::StatusOr<v1::CancelPatientAppointmentsResponse> {
        RETURN_IF_ERROR(server_kit::ValidateId("patient_id", request->patient_id()));
        RETURN_IF_ERROR(server_kit::ValidateId("workflow_id", request->workflow_id()));
        RETURN_IF_ERROR(server_kit::ValidateText("reason", request->reason(), 1, 500));
        ASSIGN_OR_RETURN(PatientCancellation result,
                         repository_.CancelForPatient(request->patient_id(), request->workflow_id(),
                                                      request->reason(),
                                                      request->patient_deceased(), clock_.Now()));
        if (result.replayed) {
          replayed_for_patient_.Increment();
        } else {
          cancelled_for_patient_.Increment(static_cast<double>(result.cancelled.size()));
        }
        v1::CancelPatientAppointmentsResponse answer;
        for (Appointment& appointment : result.cancelled) {
          *answer.add_cancelled() = std::move(appointment);
        }
        answer.set_replayed(result.replayed);
        return answer;
      });
}

grpc::Status AppointmentsService::RestorePatientAppointments(
    grpc::ServerContext* context, const v1::RestorePatientAppointmentsRequest* request,
    v1::RestorePatientAppointmentsResponse* response) {
  return server_kit::Serve(
      context, response, [&]() -> absl::StatusOr<v1::RestorePatientAppointmentsResponse> {
        RETURN_IF_ERROR(server_kit::ValidateId("patient_id", request->patient_id()));
        RETURN_IF_ERROR(server_kit::ValidateId("workflow_id", request->workflow_id()));
        ASSIGN_OR_RETURN(std::vector<Appointment> restored,
                         repository_.RestoreForPatient(request->patient_id(),
                                                       request->workflow_id(), clock_.Now()));
        restored_.Increment(static_cast<double>(restored.size()));
        v1::RestorePatientAppointmentsResponse answer;
        for (Appointment& appointment : restored) *answer.add_restored() = std::move(appointment);
        return answer;
      });
}

}  // namespace appointments
