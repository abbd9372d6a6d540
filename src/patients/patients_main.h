// The patients service's process: its definition (name, usage, default listeners and database,
// migrations), its repository and gRPC service, and the DeathWorkflow RecordDeath hands deaths
// to, which `set_up_deaths` builds for the integration pattern the process runs (the binary
// passes integration::SetUpDeathWorkflow: src/binaries/patients.cc).
#ifndef HOSPITAL_SRC_PATIENTS_PATIENTS_MAIN_H_
#define HOSPITAL_SRC_PATIENTS_PATIENTS_MAIN_H_

#include <functional>

#include "absl/status/statusor.h"
#include "patients/death_workflow.h"
#include "patients/patients_repository.h"
#include "server_kit/service_main.h"

namespace patients {

// Builds the death workflow over `repository`, keeping what it uses in `context`.
using DeathWorkflowSetUp = std::function<absl::StatusOr<DeathWorkflow*>(
    server_kit::ServiceContext& context, PatientsRepository& repository)>;

// Runs the service until SIGTERM or SIGINT (server_kit::ServiceMain); the process's exit code.
int PatientsMain(int argc, char** argv, const DeathWorkflowSetUp& set_up_deaths);

}  // namespace patients

#endif  // HOSPITAL_SRC_PATIENTS_PATIENTS_MAIN_H_
