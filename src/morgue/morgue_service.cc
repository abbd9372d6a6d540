#include "morgue/morgue_service.h"

#include "absl/strings/str_cat.h"
#include "server_kit/rpc_support.h"

namespace morgue {
namespace {

using server_kit::ToGrpcStatus;

// Clocks of different hosts disagree a little; a death "in the future" by less than this is
// accepted from the patients service.
constexpr absl::Duration kClockSkewAllowance = absl::Minutes(5);

prometheus::Family<prometheus::Counter>& AdmissionsFamily(prometheus::Registry& registry) {
  return prometheus::BuildCounter()
      .Name("hospital_morgue_admissions_total")
      .Help("AdmitDeceased calls that succeeded, by result.")
      .Register(registry);
}

}  // namespace

MorgueService::MorgueService(MorgueRepository& repository, resilience::Clock& clock,
                             prometheus::Registry& metrics)
    : repository_(repository),
      clock_(clock),
      admitted_(AdmissionsFamily(metrics).Add({{"result", "admitted"}})),
      already_admitted_(AdmissionsFamily(metrics).Add({{"result", "already_admitted"}})),
      released_(prometheus::BuildCounter()
                    .Name("hospital_morgue_releases_total")
                    .Help("Bodies released to funeral homes.")
                    .Register(metrics)
                    .Add({})),
      cancelled_(prometheus::BuildCounter()
                     .Name("hospital_morgue_cancellations_total")
                     .Help("Admissions undone by the death workflow's compensation.")
                     .Register(metrics)
                     .Add({})) {}

grpc::Status MorgueService::AdmitDeceased(grpc::ServerContext*,
                                          const hospital::morgue::v1::AdmitDeceasedRequest* request,
                                          hospital::morgue::v1::AdmitDeceasedResponse* response) {
  if (auto s = server_kit::ValidateId("patient_id", request->patient_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (auto s = server_kit::ValidateId("workflow_id", request->workflow_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  absl::StatusOr<absl::Time> time_of_death = server_kit::ValidateTimestamp(
      "time_of_death", request->has_time_of_death(), request->time_of_death());
  if (!time_of_death.ok()) return ToGrpcStatus(time_of_death.status());
  const absl::Time now = clock_.Now();
  if (*time_of_death > now + kClockSkewAllowance) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "time_of_death: is in the future"};
  }
  if (auto s = server_kit::ValidateText("cause", request->cause(), 1, 500); !s.ok()) {
    return ToGrpcStatus(s);
  }
  absl::StatusOr<AdmitResult> result = repository_.Admit(
      request->patient_id(), request->workflow_id(), *time_of_death, request->cause(), now);
  if (!result.ok()) return ToGrpcStatus(result.status());
  (result->already_admitted ? already_admitted_ : admitted_).Increment();
  *response->mutable_admission() = std::move(result->admission);
  response->set_already_admitted(result->already_admitted);
  return grpc::Status::OK;
}

grpc::Status MorgueService::GetAdmission(grpc::ServerContext*,
                                         const hospital::morgue::v1::GetAdmissionRequest* request,
                                         Admission* response) {
  absl::StatusOr<Admission> admission;
  switch (request->key_case()) {
    case hospital::morgue::v1::GetAdmissionRequest::kAdmissionId:
      if (auto s = server_kit::ValidateId("admission_id", request->admission_id()); !s.ok()) {
        return ToGrpcStatus(s);
      }
      admission = repository_.GetById(request->admission_id());
      break;
    case hospital::morgue::v1::GetAdmissionRequest::kPatientId:
      if (auto s = server_kit::ValidateId("patient_id", request->patient_id()); !s.ok()) {
        return ToGrpcStatus(s);
      }
      admission = repository_.GetByPatient(request->patient_id());
      break;
    case hospital::morgue::v1::GetAdmissionRequest::KEY_NOT_SET:
      return {grpc::StatusCode::INVALID_ARGUMENT, "key: set admission_id or patient_id"};
  }
  if (!admission.ok()) return ToGrpcStatus(admission.status());
  *response = *std::move(admission);
  return grpc::Status::OK;
}

grpc::Status MorgueService::ListAdmissions(
    grpc::ServerContext*, const hospital::morgue::v1::ListAdmissionsRequest* request,
    hospital::morgue::v1::ListAdmissionsResponse* response) {
  absl::StatusOr<int> page_size = server_kit::ValidatePageSize("page_size", request->page_size());
  if (!page_size.ok()) return ToGrpcStatus(page_size.status());
  absl::StatusOr<std::string> after =
      server_kit::DecodePageToken("page_token", request->page_token());
  if (!after.ok()) return ToGrpcStatus(after.status());
  if (!hospital::morgue::v1::AdmissionStatus_IsValid(request->status())) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            absl::StrCat("status: unknown value ", request->status())};
  }
  absl::StatusOr<AdmissionPage> page = repository_.List(*after, *page_size, request->status());
  if (!page.ok()) return ToGrpcStatus(page.status());
  for (Admission& admission : page->admissions) {
    *response->add_admissions() = std::move(admission);
  }
  if (!page->last_admission_id.empty()) {
    response->set_next_page_token(server_kit::EncodePageToken(page->last_admission_id));
  }
  return grpc::Status::OK;
}

grpc::Status MorgueService::ReleaseBody(grpc::ServerContext*,
                                        const hospital::morgue::v1::ReleaseBodyRequest* request,
                                        Admission* response) {
  if (auto s = server_kit::ValidateId("admission_id", request->admission_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (auto s = server_kit::ValidateText("funeral_home", request->funeral_home(), 1, 200); !s.ok()) {
    return ToGrpcStatus(s);
  }
  absl::StatusOr<Admission> released =
      repository_.Release(request->admission_id(), request->funeral_home(), clock_.Now());
  if (!released.ok()) return ToGrpcStatus(released.status());
  released_.Increment();
  *response = *std::move(released);
  return grpc::Status::OK;
}

grpc::Status MorgueService::CancelAdmission(
    grpc::ServerContext*, const hospital::morgue::v1::CancelAdmissionRequest* request,
    hospital::morgue::v1::CancelAdmissionResponse* response) {
  if (auto s = server_kit::ValidateId("patient_id", request->patient_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (auto s = server_kit::ValidateId("workflow_id", request->workflow_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  absl::StatusOr<bool> cancelled =
      repository_.CancelWorkflow(request->patient_id(), request->workflow_id(), clock_.Now());
  if (!cancelled.ok()) return ToGrpcStatus(cancelled.status());
  if (*cancelled) cancelled_.Increment();
  response->set_cancelled(*cancelled);
  return grpc::Status::OK;
}

}  // namespace morgue
