#include "integration/producer_factory.h"

#include <memory>

#include "absl/flags/flag.h"
#include "base/status.h"
#include "integration/async/producer.h"
#include "integration/direct_db_write/producer.h"
#include "integration/file_drop/producer.h"
#include "integration/pattern_flag.h"
#include "integration/producer_context.h"
#include "integration/shared_db_batch/producer.h"
#include "integration/sync/producer.h"

ABSL_FLAG(absl::Duration, reconcile_interval, absl::Seconds(1),
          "How often owed undo calls are retried and orphaned deaths resumed (and, with "
          "--death_workflow=direct_db_write, deaths not yet written into the other databases)");

namespace integration {

absl::StatusOr<patients::DeathWorkflow*> SetUpDeathWorkflow(
    server_kit::ServiceContext& service, patients::PatientsRepository& repository) {
  ASSIGN_OR_RETURN(const Pattern pattern, PatternFromFlags());
  RETURN_IF_ERROR(CheckEngine(pattern, service.database.engine()));
  auto* environment = service.Keep(std::make_unique<base::RealEnvironment>());
  ProducerContext context{service, repository, environment->environment(),
                          absl::GetFlag(FLAGS_reconcile_interval)};
  ASSIGN_OR_RETURN(sync::SynchronousDeathWorkflow* const saga, sync::SetUpProducer(context));
  switch (pattern) {
    case Pattern::kSync:
      return saga;
    case Pattern::kAsync:
      return async::SetUpProducer(context);
    case Pattern::kSharedDbBatch:
      return shared_db_batch::SetUpProducer(context);
    case Pattern::kDirectDbWrite:
      return direct_db_write::SetUpProducer(context);
    case Pattern::kFileDrop:
      return file_drop::SetUpProducer(context);
  }
  return absl::InternalError("no module for this --death_workflow");
}

}  // namespace integration
