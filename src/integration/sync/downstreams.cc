#include "integration/sync/downstreams.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace integration::sync {
namespace {

// Sends `request` through `guarded` to one of `endpoints` (every workflow call carries its
// workflow id as idempotency key, the same on every attempt).
template <typename Request, typename Response>
void CallGuarded(resilience::GuardedMethod& guarded, resilience::EndpointSet& endpoints,
                 const Request& request, absl::Time parent_deadline,
                 Downstreams::Done<Response> done) {
  resilience::CallOptions options;
  options.parent_deadline = parent_deadline;
  options.metadata = {{"idempotency-key", request.workflow_id()}};
  resilience::CallUnary<Request, Response>(
      guarded, endpoints, resilience::UnaryMethod<Request, Response>(guarded.full_name()), request,
      std::move(options), [done = std::move(done)](const absl::Status& status, Response& response) {
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

GrpcDownstreams::GrpcDownstreams(std::unique_ptr<resilience::EndpointSet> morgue,
                                 std::unique_ptr<resilience::EndpointSet> appointments,
                                 resilience::TargetRegistry& targets)
    : morgue_(std::move(morgue)),
      appointments_(std::move(appointments)),
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
                                    "RestorePatientAppointments")) {}

GrpcDownstreams::~GrpcDownstreams() {
  admit_.target().Shutdown();
  cancel_appointments_.target().Shutdown();
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
  CallGuarded(admit_, *morgue_, request, parent_deadline, std::move(done));
}

void GrpcDownstreams::CancelAdmission(const morgue_v1::CancelAdmissionRequest& request,
                                      absl::Time parent_deadline,
                                      Done<morgue_v1::CancelAdmissionResponse> done) {
  CallGuarded(cancel_admission_, *morgue_, request, parent_deadline, std::move(done));
}

void GrpcDownstreams::ConfirmAdmission(const morgue_v1::ConfirmAdmissionRequest& request,
                                       absl::Time parent_deadline,
                                       Done<morgue_v1::ConfirmAdmissionResponse> done) {
  CallGuarded(confirm_admission_, *morgue_, request, parent_deadline, std::move(done));
}

void GrpcDownstreams::CancelPatientAppointments(
    const appointments_v1::CancelPatientAppointmentsRequest& request, absl::Time parent_deadline,
    Done<appointments_v1::CancelPatientAppointmentsResponse> done) {
  CallGuarded(cancel_appointments_, *appointments_, request, parent_deadline, std::move(done));
}

void GrpcDownstreams::RestorePatientAppointments(
    const appointments_v1::RestorePatientAppointmentsRequest& request, absl::Time parent_deadline,
    Done<appointments_v1::RestorePatientAppointmentsResponse> done) {
  CallGuarded(restore_appointments_, *appointments_, request, parent_deadline, std::move(done));
}

}  // namespace integration::sync
