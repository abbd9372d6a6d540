#include "integration/sync/downstreams.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace integration::sync {
namespace {

// One of a stub's callback-API methods, e.g. &MorgueService::StubInterface::async_interface::
// AdmitDeceased (the std::function overload).
template <typename Service, typename Request, typename Response>
using AsyncMethod = void (Service::StubInterface::async_interface::*)(
    grpc::ClientContext*, const Request*, Response*, std::function<void(grpc::Status)>);

// Sends `request` through `guarded` (every workflow call carries its workflow id as idempotency
// key, the same on every attempt).
template <typename Service, typename Request, typename Response>
void CallGuarded(resilience::GuardedMethod& guarded, typename Service::Stub* stub,
                 AsyncMethod<Service, Request, Response> method, const Request& request,
                 absl::Time parent_deadline, Downstreams::Done<Response> done) {
  resilience::CallOptions options;
  options.parent_deadline = parent_deadline;
  options.metadata = {{"idempotency-key", request.workflow_id()}};
  resilience::CallUnary<Request, Response>(
      guarded,
      [stub, method](grpc::ClientContext* context, const Request* sent, Response* received,
                     std::function<void(grpc::Status)> callback) {
        (stub->async()->*method)(context, sent, received, std::move(callback));
      },
      request, std::move(options),
      [done = std::move(done)](const absl::Status& status, Response& response) {
        done(status, response);
      });
}

resilience::GuardedMethod& Guarded(resilience::TargetRegistry& targets, const char* target,
                                   const char* service, const char* method) {
  return targets.GetTarget(target).Method(absl::StrCat("/", service, "/", method));
}

using appointments_v1::AppointmentsService;
using morgue_v1::MorgueService;

}  // namespace

GrpcDownstreams::GrpcDownstreams(std::shared_ptr<grpc::Channel> morgue,
                                 std::shared_ptr<grpc::Channel> appointments,
                                 resilience::TargetRegistry& targets)
    : morgue_(MorgueService::NewStub(morgue)),
      appointments_(AppointmentsService::NewStub(appointments)),
      admit_(Guarded(targets, kMorgueTarget, MorgueService::service_full_name(), "AdmitDeceased")),
      cancel_admission_(
          Guarded(targets, kMorgueTarget, MorgueService::service_full_name(), "CancelAdmission")),
      confirm_admission_(
          Guarded(targets, kMorgueTarget, MorgueService::service_full_name(), "ConfirmAdmission")),
      cancel_appointments_(Guarded(targets, kAppointmentsTarget,
                                   AppointmentsService::service_full_name(),
                                   "CancelPatientAppointments")),
      restore_appointments_(Guarded(targets, kAppointmentsTarget,
                                    AppointmentsService::service_full_name(),
                                    "RestorePatientAppointments")) {
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

void GrpcDownstreams::AdmitDeceased(const morgue_v1::AdmitDeceasedRequest& request,
                                    absl::Time parent_deadline,
                                    Done<morgue_v1::AdmitDeceasedResponse> done) {
  CallGuarded<MorgueService>(admit_, morgue_.get(),
                             &MorgueService::StubInterface::async_interface::AdmitDeceased, request,
                             parent_deadline, std::move(done));
}

void GrpcDownstreams::CancelAdmission(const morgue_v1::CancelAdmissionRequest& request,
                                      absl::Time parent_deadline,
                                      Done<morgue_v1::CancelAdmissionResponse> done) {
  CallGuarded<MorgueService>(cancel_admission_, morgue_.get(),
                             &MorgueService::StubInterface::async_interface::CancelAdmission,
                             request, parent_deadline, std::move(done));
}

void GrpcDownstreams::ConfirmAdmission(const morgue_v1::ConfirmAdmissionRequest& request,
                                       absl::Time parent_deadline,
                                       Done<morgue_v1::ConfirmAdmissionResponse> done) {
  CallGuarded<MorgueService>(confirm_admission_, morgue_.get(),
                             &MorgueService::StubInterface::async_interface::ConfirmAdmission,
                             request, parent_deadline, std::move(done));
}

void GrpcDownstreams::CancelPatientAppointments(
    const appointments_v1::CancelPatientAppointmentsRequest& request, absl::Time parent_deadline,
    Done<appointments_v1::CancelPatientAppointmentsResponse> done) {
  CallGuarded<AppointmentsService>(
      cancel_appointments_, appointments_.get(),
      &AppointmentsService::StubInterface::async_interface::CancelPatientAppointments, request,
      parent_deadline, std::move(done));
}

void GrpcDownstreams::RestorePatientAppointments(
    const appointments_v1::RestorePatientAppointmentsRequest& request, absl::Time parent_deadline,
    Done<appointments_v1::RestorePatientAppointmentsResponse> done) {
  CallGuarded<AppointmentsService>(
      restore_appointments_, appointments_.get(),
      &AppointmentsService::StubInterface::async_interface::RestorePatientAppointments, request,
      parent_deadline, std::move(done));
}

}  // namespace integration::sync
