// hospital.patients.v1.PatientsService: validates requests and hands them to the repository, or
// to the death workflow for RecordDeath. See protos/hospital/patients/v1/patients.proto.
#ifndef HOSPITAL_SRC_PATIENTS_PATIENTS_SERVICE_H_
#define HOSPITAL_SRC_PATIENTS_PATIENTS_SERVICE_H_

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "base/clock.h"
#include "hospital/patients/v1/patients.grpc.pb.h"
#include "patients/death_workflow.h"
#include "patients/patients_repository.h"

namespace patients {

class PatientsService final : public v1::PatientsService::Service {
 public:
  PatientsService(PatientsRepository& repository, DeathWorkflow& death_workflow, base::Clock& clock,
                  prometheus::Registry& metrics);

  grpc::Status CreatePatient(grpc::ServerContext* context, const v1::CreatePatientRequest* request,
                             v1::Patient* response) override;
  grpc::Status GetPatient(grpc::ServerContext* context, const v1::GetPatientRequest* request,
                          v1::Patient* response) override;
  grpc::Status ListPatients(grpc::ServerContext* context, const v1::ListPatientsRequest* request,
                            v1::ListPatientsResponse* response) override;
  grpc::Status UpdateContactDetails(grpc::ServerContext* context,
                                    const v1::UpdateContactDetailsRequest* request,
                                    v1::Patient* response) override;
  grpc::Status RecordDeath(grpc::ServerContext* context, const v1::RecordDeathRequest* request,
                           v1::RecordDeathResponse* response) override;

 private:
  PatientsRepository& repository_;
  DeathWorkflow& death_workflow_;
  base::Clock& clock_;
  prometheus::Counter& created_;
};

// Validation shared with tests: INVALID_ARGUMENT naming the field, or OK.
absl::Status ValidateContact(const v1::ContactDetails& contact);
absl::Status ValidateDateOfBirth(const std::string& date_of_birth, absl::Time now);

}  // namespace patients

#endif  // HOSPITAL_SRC_PATIENTS_PATIENTS_SERVICE_H_
