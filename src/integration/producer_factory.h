// The patients service's side of every pattern: reads --death_workflow once and sets up that
// pattern's module (src/integration/<pattern>/producer.h), and the sync module's background
// pass in every pattern (sync/producer.h says why).
#ifndef HOSPITAL_SRC_INTEGRATION_PRODUCER_FACTORY_H_
#define HOSPITAL_SRC_INTEGRATION_PRODUCER_FACTORY_H_

#include "absl/status/statusor.h"
#include "patients/death_workflow.h"
#include "patients/patients_repository.h"
#include "server_kit/service_main.h"

namespace integration {

// The workflow RecordDeath hands deaths to; it and what it uses are kept in `service` and
// stopped at its shutdown. `repository` must outlive the service. An error names the flag that
// is wrong or the dependency that could not be reached; nothing is started then.
absl::StatusOr<patients::DeathWorkflow*> SetUpDeathWorkflow(
    server_kit::ServiceContext& service, patients::PatientsRepository& repository);

}  // namespace integration

#endif  // HOSPITAL_SRC_INTEGRATION_PRODUCER_FACTORY_H_
