// The appointments service's process: its definition (name, usage, default listeners and database,
// migrations), its repository and gRPC service, and its consumer of PatientDied events, which
// `set_up_consumer` provides for the integration pattern the process runs (the binary passes
// integration::SetUpEventConsumer: src/binaries/appointments.cc).
#ifndef HOSPITAL_SRC_APPOINTMENTS_APPOINTMENTS_MAIN_H_
#define HOSPITAL_SRC_APPOINTMENTS_APPOINTMENTS_MAIN_H_

#include "messaging/event_consumer.h"

namespace appointments {

// Runs the service until SIGTERM or SIGINT (server_kit::ServiceMain); the process's exit code.
int AppointmentsMain(int argc, char** argv, const messaging::EventConsumerSetUp& set_up_consumer);

}  // namespace appointments

#endif  // HOSPITAL_SRC_APPOINTMENTS_APPOINTMENTS_MAIN_H_
