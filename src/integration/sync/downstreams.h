// The calls the death workflow makes to the morgue and appointments services, behind an
// interface so that the workflow's decisions are tested without a network.
#ifndef HOSPITAL_SRC_INTEGRATION_SYNC_DOWNSTREAMS_H_
#define HOSPITAL_SRC_INTEGRATION_SYNC_DOWNSTREAMS_H_

#include <functional>
#include <memory>
#include <string>

#include <grpcpp/channel.h>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "hospital/appointments/v1/appointments.grpc.pb.h"
#include "hospital/morgue/v1/morgue.grpc.pb.h"
#include "resilience/endpoint_set.h"
#include "resilience/grpc_call.h"
#include "resilience/target.h"

namespace integration::sync {

namespace morgue_v1 = hospital::morgue::v1;
namespace appointments_v1 = hospital::appointments::v1;

// Names of the downstream targets in the resilience policy.
inline constexpr char kMorgueTarget[] = "morgue";
inline constexpr char kAppointmentsTarget[] = "appointments";

// Asynchronous calls: `done` runs once, on any thread, and must not block. `parent_deadline`
// bounds the call (InfiniteFuture for background work). `idempotency_key` is sent as metadata.
class Downstreams {
 public:
  virtual ~Downstreams() = default;

  // The name of a downstream whose circuit breaker rejects calls right now, or "" when both
  // would be tried: lets the workflow fail fast before it changes anything.
  virtual std::string RejectingTarget() = 0;

  // A call's result: its status, and the response when the status is OK.
  template <typename Response>
  using Done = std::function<void(const absl::Status&, const Response&)>;

  virtual void AdmitDeceased(const morgue_v1::AdmitDeceasedRequest& request,
                             absl::Time parent_deadline,
                             Done<morgue_v1::AdmitDeceasedResponse> done) = 0;
  virtual void CancelPatientAppointments(
      const appointments_v1::CancelPatientAppointmentsRequest& request, absl::Time parent_deadline,
      Done<appointments_v1::CancelPatientAppointmentsResponse> done) = 0;
  virtual void CancelAdmission(const morgue_v1::CancelAdmissionRequest& request,
                               absl::Time parent_deadline,
                               Done<morgue_v1::CancelAdmissionResponse> done) = 0;
  virtual void RestorePatientAppointments(
      const appointments_v1::RestorePatientAppointmentsRequest& request, absl::Time parent_deadline,
      Done<appointments_v1::RestorePatientAppointmentsResponse> done) = 0;
  virtual void ConfirmAdmission(const morgue_v1::ConfirmAdmissionRequest& request,
                                absl::Time parent_deadline,
                                Done<morgue_v1::ConfirmAdmissionResponse> done) = 0;
};

// Downstreams over gRPC, every call through the resilience library (targets "morgue" and
// "appointments" of `targets`), each to one of the target's endpoints (replicas).
class GrpcDownstreams final : public Downstreams {
 public:
  // `morgue` and `appointments` serve targets "morgue" and "appointments" of `targets`.
  GrpcDownstreams(std::unique_ptr<resilience::EndpointSet> morgue,
                  std::unique_ptr<resilience::EndpointSet> appointments,
                  resilience::TargetRegistry& targets);
  // Ends the calls still in flight (both targets shut down) before the endpoints go.
  ~GrpcDownstreams() override;

  std::string RejectingTarget() override;

  void AdmitDeceased(const morgue_v1::AdmitDeceasedRequest& request, absl::Time parent_deadline,
                     Done<morgue_v1::AdmitDeceasedResponse> done) override;
  void CancelPatientAppointments(
      const appointments_v1::CancelPatientAppointmentsRequest& request, absl::Time parent_deadline,
      Done<appointments_v1::CancelPatientAppointmentsResponse> done) override;
  void CancelAdmission(const morgue_v1::CancelAdmissionRequest& request, absl::Time parent_deadline,
                       Done<morgue_v1::CancelAdmissionResponse> done) override;
  void RestorePatientAppointments(
      const appointments_v1::RestorePatientAppointmentsRequest& request, absl::Time parent_deadline,
      Done<appointments_v1::RestorePatientAppointmentsResponse> done) override;
  void ConfirmAdmission(const morgue_v1::ConfirmAdmissionRequest& request,
                        absl::Time parent_deadline,
                        Done<morgue_v1::ConfirmAdmissionResponse> done) override;

 private:
  const std::unique_ptr<resilience::EndpointSet> morgue_;
  const std::unique_ptr<resilience::EndpointSet> appointments_;
  resilience::GuardedMethod& admit_;
  resilience::GuardedMethod& cancel_admission_;
  resilience::GuardedMethod& confirm_admission_;
  resilience::GuardedMethod& cancel_appointments_;
  resilience::GuardedMethod& restore_appointments_;
};

}  // namespace integration::sync

#endif  // HOSPITAL_SRC_INTEGRATION_SYNC_DOWNSTREAMS_H_
