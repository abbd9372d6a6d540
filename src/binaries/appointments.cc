// The appointments binary: the service's own code, with the consumer of the integration pattern
// --death_workflow names. `appointments --help` lists the flags.
#include "appointments/appointments_main.h"
#include "integration/consumer_factory.h"

int main(int argc, char** argv) {
  return appointments::AppointmentsMain(argc, argv, integration::SetUpEventConsumer);
}
