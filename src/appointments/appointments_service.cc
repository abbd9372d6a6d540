#include "appointments/appointments_service.h"

#include "absl/strings/str_cat.h"
#include "server_kit/rpc_support.h"

namespace appointments {
namespace {

using server_kit::ToGrpcStatus;

prometheus::Family<prometheus::Counter>& CancelledFamily(prometheus::Registry& registry) {
  return prometheus::BuildCounter()
      .Name("hospital_appointments_cancelled_total")
      .Help("Appointments cancelled, by how: one at a time, or all of a patient's at once.")
      .Register(registry);
}

}  // namespace

AppointmentsService::AppointmentsService(AppointmentsRepository& repository,
                                         resilience::Clock& clock, prometheus::Registry& metrics)
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
                    .Add({})) {}

grpc::Status AppointmentsService::ScheduleAppointment(grpc::ServerContext*,
                                                      const v1::ScheduleAppointmentRequest* request,
                                                      Appointment* response) {
  NewAppointment appointment;
  appointment.appointment_id =
      request->appointment_id().empty() ? server_kit::NewId() : request->appointment_id();
  if (auto s = server_kit::ValidateId("appointment_id", appointment.appointment_id); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (auto s = server_kit::ValidateId("patient_id", request->patient_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  absl::StatusOr<absl::Time> scheduled_time = server_kit::ValidateTimestamp(
      "scheduled_time", request->has_scheduled_time(), request->scheduled_time());
  if (!scheduled_time.ok()) return ToGrpcStatus(scheduled_time.status());
  const absl::Time now = clock_.Now();
  if (*scheduled_time <= now) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "scheduled_time: must be in the future"};
  }
  if (auto s = server_kit::ValidateText("clinician", request->clinician(), 1, 100); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (auto s = server_kit::ValidateText("purpose", request->purpose(), 0, 500); !s.ok()) {
    return ToGrpcStatus(s);
  }
  appointment.patient_id = request->patient_id();
  appointment.scheduled_time = *scheduled_time;
  appointment.clinician = request->clinician();
  appointment.purpose = request->purpose();
  absl::StatusOr<Appointment> scheduled = repository_.Schedule(appointment, now);
  if (!scheduled.ok()) {
    if (absl::IsFailedPrecondition(scheduled.status())) refused_deceased_.Increment();
    return ToGrpcStatus(scheduled.status());
  }
  scheduled_.Increment();
  *response = *std::move(scheduled);
  return grpc::Status::OK;
}

grpc::Status AppointmentsService::GetAppointment(grpc::ServerContext*,
                                                 const v1::GetAppointmentRequest* request,
                                                 Appointment* response) {
  if (auto s = server_kit::ValidateId("appointment_id", request->appointment_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  absl::StatusOr<Appointment> appointment = repository_.Get(request->appointment_id());
  if (!appointment.ok()) return ToGrpcStatus(appointment.status());
  *response = *std::move(appointment);
  return grpc::Status::OK;
}

grpc::Status AppointmentsService::ListAppointments(grpc::ServerContext*,
                                                   const v1::ListAppointmentsRequest* request,
                                                   v1::ListAppointmentsResponse* response) {
  if (auto s = server_kit::ValidateId("patient_id", request->patient_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  absl::StatusOr<int> page_size = server_kit::ValidatePageSize("page_size", request->page_size());
  if (!page_size.ok()) return ToGrpcStatus(page_size.status());
  absl::StatusOr<std::string> position =
      server_kit::DecodePageToken("page_token", request->page_token());
  if (!position.ok()) return ToGrpcStatus(position.status());
  if (!v1::AppointmentStatus_IsValid(request->status())) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            absl::StrCat("status: unknown value ", request->status())};
  }
  absl::StatusOr<AppointmentPage> page =
      repository_.List(request->patient_id(), *position, *page_size, request->status());
  if (!page.ok()) return ToGrpcStatus(page.status());
  for (Appointment& appointment : page->appointments) {
    *response->add_appointments() = std::move(appointment);
  }
  if (!page->next_position.empty()) {
    response->set_next_page_token(server_kit::EncodePageToken(page->next_position));
  }
  return grpc::Status::OK;
}

grpc::Status AppointmentsService::CancelAppointment(grpc::ServerContext*,
                                                    const v1::CancelAppointmentRequest* request,
                                                    Appointment* response) {
  if (auto s = server_kit::ValidateId("appointment_id", request->appointment_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (auto s = server_kit::ValidateText("reason", request->reason(), 1, 500); !s.ok()) {
    return ToGrpcStatus(s);
  }
  bool changed = false;
  absl::StatusOr<Appointment> cancelled =
      repository_.Cancel(changed, request->appointment_id(), request->reason(), clock_.Now());
  if (!cancelled.ok()) return ToGrpcStatus(cancelled.status());
  if (changed) cancelled_single_.Increment();
  *response = *std::move(cancelled);
  return grpc::Status::OK;
}

grpc::Status AppointmentsService::CancelPatientAppointments(
    grpc::ServerContext*, const v1::CancelPatientAppointmentsRequest* request,
    v1::CancelPatientAppointmentsResponse* response) {
  if (auto s = server_kit::ValidateId("patient_id", request->patient_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (auto s = server_kit::ValidateId("workflow_id", request->workflow_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (auto s = server_kit::ValidateText("reason", request->reason(), 1, 500); !s.ok()) {
    return ToGrpcStatus(s);
  }
  absl::StatusOr<PatientCancellation> result =
      repository_.CancelForPatient(request->patient_id(), request->workflow_id(), request->reason(),
                                   request->patient_deceased(), clock_.Now());
  if (!result.ok()) return ToGrpcStatus(result.status());
  if (!result->replayed) {
    cancelled_for_patient_.Increment(static_cast<double>(result->cancelled.size()));
  }
  for (Appointment& appointment : result->cancelled) {
    *response->add_cancelled() = std::move(appointment);
  }
  response->set_replayed(result->replayed);
  return grpc::Status::OK;
}

grpc::Status AppointmentsService::RestorePatientAppointments(
    grpc::ServerContext*, const v1::RestorePatientAppointmentsRequest* request,
    v1::RestorePatientAppointmentsResponse* response) {
  if (auto s = server_kit::ValidateId("patient_id", request->patient_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (auto s = server_kit::ValidateId("workflow_id", request->workflow_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  absl::StatusOr<std::vector<Appointment>> restored =
      repository_.RestoreForPatient(request->patient_id(), request->workflow_id(), clock_.Now());
  if (!restored.ok()) return ToGrpcStatus(restored.status());
  restored_.Increment(static_cast<double>(restored->size()));
  for (Appointment& appointment : *restored) *response->add_restored() = std::move(appointment);
  return grpc::Status::OK;
}

}  // namespace appointments
