// The appointments service binary. `appointments --help` lists the flags.
#include "appointments/appointments_repository.h"
#include "appointments/appointments_service.h"
#include "appointments/patient_died_handler.h"
#include "integration/consumer_factory.h"
#include "server_kit/service_main.h"

int main(int argc, char** argv) {
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
      argc, argv, definition, [](server_kit::ServiceContext& context) -> absl::Status {
        auto* repository =
            context.Keep(std::make_unique<appointments::AppointmentsRepository>(context.database));
        auto* service = context.Keep(std::make_unique<appointments::AppointmentsService>(
            *repository, base::SystemClock(), context.server.metrics()));
        context.server.RegisterService(
            service, hospital::appointments::v1::AppointmentsService::service_full_name());
        auto* handler = context.Keep(std::make_unique<appointments::PatientDiedHandler>());
        return integration::SetUpEventConsumer(context, "appointments", *handler,
                                               appointments::kPatientDiedFaultMethod);
      });
}
