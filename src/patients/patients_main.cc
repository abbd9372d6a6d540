#include "patients/patients_main.h"

#include <memory>

#include "base/status.h"
#include "hospital/patients/v1/patients.grpc.pb.h"
#include "patients/death_workflow.h"
#include "patients/patients_repository.h"
#include "patients/patients_service.h"
#include "server_kit/service_main.h"

namespace patients {
namespace {

absl::Status Setup(server_kit::ServiceContext& context, const DeathWorkflowSetUp& set_up_deaths) {
  auto* repository = context.Keep(std::make_unique<PatientsRepository>(context.database));
  // How deaths reach the morgue and the appointments service: the pattern's module.
  ASSIGN_OR_RETURN(DeathWorkflow* const death_workflow, set_up_deaths(context, *repository));
  auto* service = context.Keep(std::make_unique<PatientsService>(
      *repository, *death_workflow, base::SystemClock(), context.server.metrics()));
  context.server.RegisterService(service,
                                 hospital::patients::v1::PatientsService::service_full_name());
  return absl::OkStatus();
}

}  // namespace

int PatientsMain(int argc, char** argv, const DeathWorkflowSetUp& set_up_deaths) {
  const server_kit::ServiceDefinition definition{
      "patients",
      "The patients service: patients, their records, and the recording of deaths, which "
      "reaches the morgue and appointments services.\n"
      "Usage: patients [--listen=0.0.0.0:50051] [--metrics_listen=0.0.0.0:9091] "
      "[--db=patients.db] [--morgue_address=localhost:50052] "
      "[--appointments_address=localhost:50053] [--resilience_policy=policy.json] "
      "[--death_workflow=sync|async|shared_db_batch|direct_db_write|file_drop] "
      "[--nats_url=nats://127.0.0.1:4222]",
      "0.0.0.0:50051",
      "127.0.0.1:50061",
      "0.0.0.0:9091",
      "patients.db",
      Migrations(),
  };
  return server_kit::ServiceMain(argc, argv, definition,
                                 [&set_up_deaths](server_kit::ServiceContext& context) {
                                   return Setup(context, set_up_deaths);
                                 });
}

}  // namespace patients
