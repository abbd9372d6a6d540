#include "integration/direct_db_write/producer.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "appointments/patient_died_handler.h"
#include "base/status.h"
#include "integration/direct_db_write/direct_write_death_workflow.h"
#include "integration/shared_db_batch/batch_sync.h"
#include "morgue/patient_died_handler.h"

ABSL_FLAG(std::string, morgue_db, "",
          "With --death_workflow=direct_db_write: the morgue's database, written by this service");
ABSL_FLAG(std::string, appointments_db, "",
          "With --death_workflow=direct_db_write: the appointments service's database, written "
          "by this service");
ABSL_FLAG(absl::Duration, direct_write_busy_timeout, absl::Seconds(1),
          "With --death_workflow=direct_db_write: how long a write waits for a lock the owner "
          "of the other database holds before the death is left to the background pass");

namespace integration::direct_db_write {
namespace {

// What the module owns, torn down in reverse order.
struct DirectWriteRuntime {
  std::unique_ptr<server_kit::Database> morgue_db;
  std::unique_ptr<server_kit::Database> appointments_db;
  morgue::PatientDiedHandler morgue_handler;
  appointments::PatientDiedHandler appointments_handler;
  std::unique_ptr<shared_db_batch::BatchSync> copy;
  std::unique_ptr<DirectWriteDeathWorkflow> workflow;
};

}  // namespace

absl::StatusOr<patients::DeathWorkflow*> SetUpProducer(ProducerContext& context) {
  server_kit::ServiceContext& service = context.service;
  constexpr char kRequired[] = "required with --death_workflow=direct_db_write";
  server_kit::DatabaseOptions target_options;
  target_options.busy_timeout = absl::GetFlag(FLAGS_direct_write_busy_timeout);
  auto* runtime = service.Keep(std::make_unique<DirectWriteRuntime>());
  ASSIGN_OR_RETURN(runtime->morgue_db,
                   shared_db_batch::OpenServiceDatabase("morgue_db", absl::GetFlag(FLAGS_morgue_db),
                                                        kRequired, target_options));
  ASSIGN_OR_RETURN(
      runtime->appointments_db,
      shared_db_batch::OpenServiceDatabase("appointments_db", absl::GetFlag(FLAGS_appointments_db),
                                           kRequired, target_options));
  // The patients database is both the copy's own (its positions) and its source.
  runtime->copy = std::make_unique<shared_db_batch::BatchSync>(
      service.database, service.database,
      std::vector<shared_db_batch::SyncTarget>{
          {"morgue", runtime->morgue_db.get(), &runtime->morgue_handler},
          {"appointments", runtime->appointments_db.get(), &runtime->appointments_handler}},
      base::SystemClock(), service.server.metrics(), /*batch_size=*/500);
  runtime->workflow = std::make_unique<DirectWriteDeathWorkflow>(
      context.repository, *runtime->copy, base::SystemClock(), service.server.metrics());
  runtime->workflow->StartBackground(context.background_interval);
  service.on_shutdown.push_back([runtime] { runtime->workflow->Stop(); });
  return runtime->workflow.get();
}

}  // namespace integration::direct_db_write
