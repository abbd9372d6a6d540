#include "morgue/morgue_main.h"

#include "hospital/morgue/v1/morgue.grpc.pb.h"
#include "morgue/morgue_repository.h"
#include "morgue/morgue_service.h"
#include "morgue/patient_died_handler.h"
#include "server_kit/service_main.h"

namespace morgue {

int MorgueMain(int argc, char** argv, const messaging::EventConsumerSetUp& set_up_consumer) {
  const server_kit::ServiceDefinition definition{
      "morgue",
      "The morgue service: admits deceased patients and releases them to funeral homes.\n"
      "Usage: morgue [--listen=0.0.0.0:50052] [--metrics_listen=0.0.0.0:9092] [--db=morgue.db] "
      "[--death_workflow=sync|async|file_drop] [--nats_url=nats://127.0.0.1:4222]",
      "0.0.0.0:50052",
      "127.0.0.1:50062",
      "0.0.0.0:9092",
      "morgue.db",
      morgue::Migrations(),
  };
  return server_kit::ServiceMain(
      argc, argv, definition,
      [&set_up_consumer](server_kit::ServiceContext& context) -> absl::Status {
        auto* repository =
            context.Keep(std::make_unique<morgue::MorgueRepository>(context.database));
        auto* service = context.Keep(std::make_unique<morgue::MorgueService>(
            *repository, base::SystemClock(), context.server.metrics()));
        context.server.RegisterService(service,
                                       hospital::morgue::v1::MorgueService::service_full_name());
        auto* handler = context.Keep(std::make_unique<morgue::PatientDiedHandler>());
        return set_up_consumer(context, "morgue", *handler, morgue::kPatientDiedFaultMethod);
      });
}

}  // namespace morgue
