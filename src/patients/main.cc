// The patients service binary. `patients --help` lists the flags.
#include <memory>

#include "base/status.h"
#include "hospital/patients/v1/patients.grpc.pb.h"
#include "integration/producer_factory.h"
#include "patients/death_workflow.h"
#include "patients/patients_repository.h"
#include "patients/patients_service.h"
#include "server_kit/service_main.h"

namespace {

absl::Status Setup(server_kit::ServiceContext& context) {
  auto* repository = context.Keep(std::make_unique<patients::PatientsRepository>(context.database));
  // How deaths reach the morgue and the appointments service: the module of --death_workflow.
  ASSIGN_OR_RETURN(patients::DeathWorkflow* const death_workflow,
                   integration::SetUpDeathWorkflow(context, *repository));
  auto* service = context.Keep(std::make_unique<patients::PatientsService>(
      *repository, *death_workflow, base::SystemClock(), context.server.metrics()));
  context.server.RegisterService(service,
                                 hospital::patients::v1::PatientsService::service_full_name());
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
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
      patients::Migrations(),
  };
  return server_kit::ServiceMain(argc, argv, definition, Setup);
}
