// hospital.morgue.v1.MorgueService: validates requests, calls the repository, counts business
// events. See protos/hospital/morgue/v1/morgue.proto for the contract.
#ifndef HOSPITAL_SRC_MORGUE_MORGUE_SERVICE_H_
#define HOSPITAL_SRC_MORGUE_MORGUE_SERVICE_H_

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "base/clock.h"
#include "hospital/morgue/v1/morgue.grpc.pb.h"
#include "morgue/morgue_repository.h"

namespace morgue {

namespace v1 = hospital::morgue::v1;

class MorgueService final : public hospital::morgue::v1::MorgueService::Service {
 public:
  // `clock` gives admission and release times.
  MorgueService(MorgueRepository& repository, base::Clock& clock, prometheus::Registry& metrics);

  grpc::Status AdmitDeceased(grpc::ServerContext* context,
                             const hospital::morgue::v1::AdmitDeceasedRequest* request,
                             hospital::morgue::v1::AdmitDeceasedResponse* response) override;
  grpc::Status GetAdmission(grpc::ServerContext* context,
                            const hospital::morgue::v1::GetAdmissionRequest* request,
                            Admission* response) override;
  grpc::Status ListAdmissions(grpc::ServerContext* context,
                              const hospital::morgue::v1::ListAdmissionsRequest* request,
                              hospital::morgue::v1::ListAdmissionsResponse* response) override;
  grpc::Status ReleaseBody(grpc::ServerContext* context,
                           const hospital::morgue::v1::ReleaseBodyRequest* request,
                           Admission* response) override;
  grpc::Status CancelAdmission(grpc::ServerContext* context,
                               const hospital::morgue::v1::CancelAdmissionRequest* request,
                               hospital::morgue::v1::CancelAdmissionResponse* response) override;
  grpc::Status ConfirmAdmission(grpc::ServerContext* context,
                                const hospital::morgue::v1::ConfirmAdmissionRequest* request,
                                hospital::morgue::v1::ConfirmAdmissionResponse* response) override;

 private:
  MorgueRepository& repository_;
  base::Clock& clock_;
  prometheus::Counter& admitted_;
  prometheus::Counter& already_admitted_;
  prometheus::Counter& released_;
  prometheus::Counter& cancelled_;
  prometheus::Counter& confirmed_;
};

}  // namespace morgue

#endif  // HOSPITAL_SRC_MORGUE_MORGUE_SERVICE_H_
