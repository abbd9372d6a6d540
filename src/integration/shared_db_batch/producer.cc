#include "integration/shared_db_batch/producer.h"

#include <memory>

#include "integration/local_death_workflow.h"

namespace integration::shared_db_batch {

absl::StatusOr<patients::DeathWorkflow*> SetUpProducer(ProducerContext& context) {
  return context.service.Keep(std::make_unique<LocalDeathWorkflow>(
      context.repository, base::SystemClock(), context.service.server.metrics(),
      DeathDelivery::kSharedDatabase));
}

}  // namespace integration::shared_db_batch
