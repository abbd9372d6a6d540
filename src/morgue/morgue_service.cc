#include "morgue/morgue_service.h"

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "server_kit/rpc_support.h"
#include "server_kit/serve.h"

namespace morgue {
namespace {

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

MorgueService::MorgueService(MorgueRepository& repository, base::Clock& clock,
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
                     .Add({})),
      confirmed_(prometheus::BuildCounter()
                     .Name("hospital_morgue_confirmations_total")
                     .Help("Provisional admissions confirmed by their completed death workflow.")
                     .Register(metrics)
                     .Add({})) {}

grpc::Status MorgueService::AdmitDeceased(grpc::ServerContext* context,
                                          const v1::AdmitDeceasedRequest* request,
                                          v1::AdmitDeceasedResponse* response) {
  return server_kit::Serve(context, response, [&]() -> absl::StatusOr<v1::AdmitDeceasedResponse> {
    RETURN_IF_ERROR(server_kit::ValidateId("patient_id", request->patient_id()));
    RETURN_IF_ERROR(server_kit::ValidateId("workflow_id", request->workflow_id()));
    ASSIGN_OR_RETURN(const absl::Time time_of_death,
                     server_kit::ValidateTimestamp("time_of_death", request->has_time_of_death(),
                                                   request->time_of_death()));
    const absl::Time now = clock_.Now();
    if (time_of_death > now + kClockSkewAllowance) {
      return absl::InvalidArgumentError("time_of_death: is in the future");
    }
    RETURN_IF_ERROR(server_kit::ValidateText("cause", request->cause(), 1, 500));
    ASSIGN_OR_RETURN(AdmitResult result,
                     repository_.Admit(request->patient_id(), request->workflow_id(), time_of_death,
                                       request->cause(), now));
    (result.already_admitted ? already_admitted_ : admitted_).Increment();
    v1::AdmitDeceasedResponse admitted;
    *admitted.mutable_admission() = std::move(result.admission);
    admitted.set_already_admitted(result.already_admitted);
    return admitted;
  });
}

grpc::Status MorgueService::GetAdmission(grpc::ServerContext* context,
                                         const v1::GetAdmissionRequest* request,
                                         Admission* response) {
  return server_kit::Serve(context, response, [&]() -> absl::StatusOr<Admission> {
    switch (request->key_case()) {
      case v1::GetAdmissionRequest::kAdmissionId:
        RETURN_IF_ERROR(server_kit::ValidateId("admission_id", request->admission_id()));
        return repository_.GetById(request->admission_id());
      case v1::GetAdmissionRequest::kPatientId:
        RETURN_IF_ERROR(server_kit::ValidateId("patient_id", request->patient_id()));
        return repository_.GetByPatient(request->patient_id());
      case v1::GetAdmissionRequest::KEY_NOT_SET:
        break;
    }
    return absl::InvalidArgumentError("key: set admission_id or patient_id");
  });
}

grpc::Status MorgueService::ListAdmissions(grpc::ServerContext* context,
                                           const v1::ListAdmissionsRequest* request,
                                           v1::ListAdmissionsResponse* response) {
  return server_kit::Serve(context, response, [&]() -> absl::StatusOr<v1::ListAdmissionsResponse> {
    ASSIGN_OR_RETURN(const int page_size,
                     server_kit::ValidatePageSize("page_size", request->page_size()));
    ASSIGN_OR_RETURN(const std::string after,
                     server_kit::DecodePageToken("page_token", request->page_token()));
    if (!v1::AdmissionStatus_IsValid(request->status())) {
      return absl::InvalidArgumentError(absl::StrCat("status: unknown value ", request->status()));
    }
    ASSIGN_OR_RETURN(AdmissionPage page, repository_.List(after, page_size, request->status()));
    v1::ListAdmissionsResponse listed;
    server_kit::MovePage(page, listed.mutable_admissions(), listed.mutable_next_page_token());
    return listed;
  });
}

grpc::Status MorgueService::ReleaseBody(grpc::ServerContext* context,
                                        const v1::ReleaseBodyRequest* request,
                                        Admission* response) {
  return server_kit::Serve(context, response, [&]() -> absl::StatusOr<Admission> {
    RETURN_IF_ERROR(server_kit::ValidateId("admission_id", request->admission_id()));
    RETURN_IF_ERROR(server_kit::ValidateText("funeral_home", request->funeral_home(), 1, 200));
    ASSIGN_OR_RETURN(
        Admission released,
        repository_.Release(request->admission_id(), request->funeral_home(), clock_.Now()));
    released_.Increment();
    return released;
  });
}

grpc::Status MorgueService::CancelAdmission(grpc::ServerContext* context,
                                            const v1::CancelAdmissionRequest* request,
                                            v1::CancelAdmissionResponse* response) {
  return server_kit::Serve(context, response, [&]() -> absl::StatusOr<v1::CancelAdmissionResponse> {
    RETURN_IF_ERROR(server_kit::ValidateId("patient_id", request->patient_id()));
    RETURN_IF_ERROR(server_kit::ValidateId("workflow_id", request->workflow_id()));
    ASSIGN_OR_RETURN(
        const bool cancelled,
        repository_.CancelWorkflow(request->patient_id(), request->workflow_id(), clock_.Now()));
    if (cancelled) cancelled_.Increment();
    v1::CancelAdmissionResponse answer;
    answer.set_cancelled(cancelled);
    return answer;
  });
}

grpc::Status MorgueService::ConfirmAdmission(grpc::ServerContext* context,
                                             const v1::ConfirmAdmissionRequest* request,
                                             v1::ConfirmAdmissionResponse* response) {
  return server_kit::Serve(
      context, response, [&]() -> absl::StatusOr<v1::ConfirmAdmissionResponse> {
        RETURN_IF_ERROR(server_kit::ValidateId("patient_id", request->patient_id()));
        RETURN_IF_ERROR(server_kit::ValidateId("workflow_id", request->workflow_id()));
        ASSIGN_OR_RETURN(ConfirmResult result,
                         repository_.Confirm(request->patient_id(), request->workflow_id()));
        if (!result.already_confirmed) confirmed_.Increment();
        v1::ConfirmAdmissionResponse answer;
        *answer.mutable_admission() = std::move(result.admission);
        answer.set_already_confirmed(result.already_confirmed);
        return answer;
      });
}

}  // namespace morgue
