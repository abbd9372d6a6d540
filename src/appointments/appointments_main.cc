#include "appointments/appointments_main.h"

#include "appointments/appointments_repository.h"
#include "appointments/appointments_service.h"
#include "appointments/patient_died_handler.h"
#include "server_kit/service_main.h"

namespace appointments {

int AppointmentsMain(int argc, char** argv, const messaging::EventConsumerSetUp& set_up_consumer) {
  const server_kit::ServiceDefinition definition{
      "appointments",
      "The appointments service: schedules visits; cancels those of deceased patients.\n"
      "Usage: appointments [--listen=0.0.0.0:50053] [--metrics_listen=0.0.0.0:9093] "
      "[--db=appointments.db] [--death_workflow=sync|async|file_drop] "
      "[--nats_url=nats://127.0.0.1:4222]",
      "0.0.0.0:50053",
      "127.0.0.1:50063",
      "0.0.0.0:9093",
      "appointments.db",
      appointments::Migrations(),
  };
  return server_kit::ServiceMain(
      argc, argv, definition,
      [&set_up_consumer](server_kit::ServiceContext& context) -> absl::Status {
        auto* repository =
            context.Keep(std::make_unique<appointments::AppointmentsRepository>(context.database));
        auto* service = context.Keep(std::make_unique<appointments::AppointmentsService>(
            *repository, base::SystemClock(), context.server.metrics()));
        context.server.RegisterService(
            service, hospital::appointments::v1::AppointmentsService::service_full_name());
        auto* handler = context.Keep(std::make_unique<appointments::PatientDiedHandler>());
        return set_up_consumer(context, "appointments", *handler,
                               appointments::kPatientDiedFaultMethod);
      });
}

}  // namespace appointments
