// The shared_db_batch module's part in the patients service: the death is recorded here only
// (local_death_workflow.h, DeathDelivery::kSharedDatabase). Needs: the batch_sync job
// (batch_sync.h, main.cc), which reads it from this database and writes the other two.
#ifndef HOSPITAL_SRC_INTEGRATION_SHARED_DB_BATCH_PRODUCER_H_
#define HOSPITAL_SRC_INTEGRATION_SHARED_DB_BATCH_PRODUCER_H_

#include "absl/status/statusor.h"
#include "integration/producer_context.h"
#include "patients/death_workflow.h"

namespace integration::shared_db_batch {

absl::StatusOr<patients::DeathWorkflow*> SetUpProducer(ProducerContext& context);

}  // namespace integration::shared_db_batch

#endif  // HOSPITAL_SRC_INTEGRATION_SHARED_DB_BATCH_PRODUCER_H_
