#include "patients/downstreams.h"

#include "absl/strings/str_cat.h"

namespace patients {
namespace {

std::string MethodName(const char* service, const char* method) {
  return absl::StrCat("/", service, "/", method);
}

resilience::CallOptions WithKey(absl::Time parent_deadline, const std::string& key) {
  resilience::CallOptions options;
  options.parent_deadline = parent_deadline;
  options.metadata = {{"idempotency-key", key}};
  return options;
}

}  // namespace

GrpcDownstreams::GrpcDownstreams(std::shared_ptr<grpc::Channel> morgue,
                                 std::shared_ptr<grpc::Channel> appointments,
                                 resilience::TargetRegistry& targets)
    : morgue_(morgue_v1::MorgueService::NewStub(morgue)),
      appointments_(appointments_v1::AppointmentsService::NewStub(appointments)),
      admit_(
          targets.GetTarget(kMorgueTarget)
              .Method(MethodName(morgue_v1::MorgueService::service_full_name(), "AdmitDeceased"))),
      cancel_admission_(targets.GetTarget(kMorgueTarget)
                            .Method(MethodName(morgue_v1::MorgueService::service_full_name(),
                                               "CancelAdmission"))),
      cancel_appointments_(
          targets.GetTarget(kAppointmentsTarget)
              .Method(MethodName(appointments_v1::AppointmentsService::service_full_name(),
                                 "CancelPatientAppointments"))),
      restore_appointments_(
          targets.GetTarget(kAppointmentsTarget)
              .Method(MethodName(appointments_v1::AppointmentsService::service_full_name(),
                                 "RestorePatientAppointments"))) {
  resilience::ReconnectBeforeProbes(targets.GetTarget(kMorgueTarget), std::move(morgue));
  resilience::ReconnectBeforeProbes(targets.GetTarget(kAppointmentsTarget),
                                    std::move(appointments));
}

std::string GrpcDownstreams::RejectingTarget() {
  for (resilience::GuardedMethod* method : {&admit_, &cancel_appointments_}) {
    resilience::Target& target = method->target();
    if (target.breaker().IsRejecting(target.environment().clock->Now())) return target.name();
  }
  return "";
}

void GrpcDownstreams::AdmitDeceased(
    const morgue_v1::AdmitDeceasedRequest& request, absl::Time parent_deadline,
    std::function<void(const grpc::Status&, const morgue_v1::AdmitDeceasedResponse&)> done) {
  resilience::CallUnary<morgue_v1::AdmitDeceasedRequest, morgue_v1::AdmitDeceasedResponse>(
      admit_,
      [stub = morgue_.get()](
          grpc::ClientContext* context, const morgue_v1::AdmitDeceasedRequest* req,
          morgue_v1::AdmitDeceasedResponse* resp, std::function<void(grpc::Status)> callback) {
        stub->async()->AdmitDeceased(context, req, resp, std::move(callback));
      },
      request, WithKey(parent_deadline, request.workflow_id()),
      [done = std::move(done)](const grpc::Status& status,
                               morgue_v1::AdmitDeceasedResponse& response) {
        done(status, response);
      });
}

void GrpcDownstreams::CancelPatientAppointments(
    const appointments_v1::CancelPatientAppointmentsRequest& request, absl::Time parent_deadline,
    std::function<void(const grpc::Status&,
                       const appointments_v1::CancelPatientAppointmentsResponse&)>
        done) {
  resilience::CallUnary<appointments_v1::CancelPatientAppointmentsRequest,
                        appointments_v1::CancelPatientAppointmentsResponse>(
      cancel_appointments_,
      [stub = appointments_.get()](grpc::ClientContext* context,
                                   const appointments_v1::CancelPatientAppointmentsRequest* req,
                                   appointments_v1::CancelPatientAppointmentsResponse* resp,
                                   std::function<void(grpc::Status)> callback) {
        stub->async()->CancelPatientAppointments(context, req, resp, std::move(callback));
      },
      request, WithKey(parent_deadline, request.workflow_id()),
      [done = std::move(done)](const grpc::Status& status,
                               appointments_v1::CancelPatientAppointmentsResponse& response) {
        done(status, response);
      });
}

void GrpcDownstreams::CancelAdmission(const morgue_v1::CancelAdmissionRequest& request,
                                      absl::Time parent_deadline,
                                      std::function<void(const grpc::Status&)> done) {
  resilience::CallUnary<morgue_v1::CancelAdmissionRequest, morgue_v1::CancelAdmissionResponse>(
      cancel_admission_,
      [stub = morgue_.get()](
          grpc::ClientContext* context, const morgue_v1::CancelAdmissionRequest* req,
          morgue_v1::CancelAdmissionResponse* resp, std::function<void(grpc::Status)> callback) {
        stub->async()->CancelAdmission(context, req, resp, std::move(callback));
      },
      request, WithKey(parent_deadline, request.workflow_id()),
      [done = std::move(done)](const grpc::Status& status, morgue_v1::CancelAdmissionResponse&) {
        done(status);
      });
}

void GrpcDownstreams::RestorePatientAppointments(
    const appointments_v1::RestorePatientAppointmentsRequest& request, absl::Time parent_deadline,
    std::function<void(const grpc::Status&)> done) {
  resilience::CallUnary<appointments_v1::RestorePatientAppointmentsRequest,
                        appointments_v1::RestorePatientAppointmentsResponse>(
      restore_appointments_,
      [stub = appointments_.get()](grpc::ClientContext* context,
                                   const appointments_v1::RestorePatientAppointmentsRequest* req,
                                   appointments_v1::RestorePatientAppointmentsResponse* resp,
                                   std::function<void(grpc::Status)> callback) {
        stub->async()->RestorePatientAppointments(context, req, resp, std::move(callback));
      },
      request, WithKey(parent_deadline, request.workflow_id()),
      [done = std::move(done)](const grpc::Status& status,
                               appointments_v1::RestorePatientAppointmentsResponse&) {
        done(status);
      });
}

}  // namespace patients
