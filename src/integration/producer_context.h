// What the patients service hands the module of the pattern it runs (producer_factory.h). A
// module builds what it needs from its own flags, keeps it in `service` (Keep), starts its
// background work and stops it in `service.on_shutdown`.
#ifndef HOSPITAL_SRC_INTEGRATION_PRODUCER_CONTEXT_H_
#define HOSPITAL_SRC_INTEGRATION_PRODUCER_CONTEXT_H_

#include "absl/time/time.h"
#include "base/clock.h"
#include "patients/patients_repository.h"
#include "server_kit/service_main.h"

namespace integration {

struct ProducerContext {
  // The service's database, server (metrics, admin listener), credentials and lifetime.
  server_kit::ServiceContext& service;
  // The patients service's record of deaths, on `service.database`.
  patients::PatientsRepository& repository;
  // Clocks, timers and randomness for the modules' own logic.
  base::Environment environment;
  // How often background work catches up (--reconcile_interval).
  absl::Duration background_interval;
};

}  // namespace integration

#endif  // HOSPITAL_SRC_INTEGRATION_PRODUCER_CONTEXT_H_
