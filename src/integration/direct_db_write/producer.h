// The direct_db_write module's set-up in the patients service. Needs: the morgue's and the
// appointments service's database files (--morgue_db, --appointments_db), created by those
// services, which this process writes through their own event handlers
// (direct_write_death_workflow.h).
#ifndef HOSPITAL_SRC_INTEGRATION_DIRECT_DB_WRITE_PRODUCER_H_
#define HOSPITAL_SRC_INTEGRATION_DIRECT_DB_WRITE_PRODUCER_H_

#include "absl/status/statusor.h"
#include "integration/producer_context.h"
#include "patients/death_workflow.h"

namespace integration::direct_db_write {

// Opens both databases and starts the background catch-up every context.background_interval
// (stopped at shutdown). INVALID_ARGUMENT naming the flag of a database that is missing.
absl::StatusOr<patients::DeathWorkflow*> SetUpProducer(ProducerContext& context);

}  // namespace integration::direct_db_write

#endif  // HOSPITAL_SRC_INTEGRATION_DIRECT_DB_WRITE_PRODUCER_H_
