// batch_sync: the shared-database batch job of --death_workflow=shared_db_batch (batch_sync.h).
// It serves only health and /metrics; its own database holds its position per target.
//
//   batch_sync --patients_db=run/patients.db --morgue_db=run/morgue.db
//              --appointments_db=run/appointments.db --sync_interval=1s
#include <memory>
#include <optional>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "appointments/patient_died_handler.h"
#include "base/clock.h"
#include "base/periodic_thread.h"
#include "base/status.h"
#include "integration/shared_db_batch/batch_sync.h"
#include "morgue/patient_died_handler.h"
#include "server_kit/log.h"
#include "server_kit/service_main.h"

ABSL_FLAG(std::string, patients_db, "", "The patients service's database (read only)");
ABSL_FLAG(std::string, morgue_db, "", "The morgue service's database (written)");
ABSL_FLAG(std::string, appointments_db, "", "The appointments service's database (written)");
ABSL_FLAG(absl::Duration, sync_interval, absl::Seconds(1),
          "How often deaths are copied: a death reaches the others within about this long");
ABSL_FLAG(int, sync_batch, 500, "Most deaths applied to one target in one transaction");

namespace {

// What the job keeps alive while it runs, torn down in reverse order.
struct Runtime {
  std::unique_ptr<server_kit::Database> patients;
  std::unique_ptr<server_kit::Database> morgue;
  std::unique_ptr<server_kit::Database> appointments;
  morgue::PatientDiedHandler morgue_handler;
  appointments::PatientDiedHandler appointments_handler;
  std::unique_ptr<integration::shared_db_batch::BatchSync> sync;
  std::optional<base::PeriodicThread> loop;
};

absl::Status Setup(server_kit::ServiceContext& context) {
  const absl::Duration interval = absl::GetFlag(FLAGS_sync_interval);
  if (interval < absl::Milliseconds(10)) {
    return absl::InvalidArgumentError(absl::StrCat("--sync_interval: must be at least 10ms, got ",
                                                   absl::FormatDuration(interval)));
  }
  const int batch = absl::GetFlag(FLAGS_sync_batch);
  if (batch < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--sync_batch: must be at least 1, got ", batch));
  }
  auto* runtime = context.Keep(std::make_unique<Runtime>());
  ASSIGN_OR_RETURN(runtime->patients,
                   integration::shared_db_batch::OpenServiceDatabase(
                       "patients_db", absl::GetFlag(FLAGS_patients_db), "required"));
  ASSIGN_OR_RETURN(runtime->morgue, integration::shared_db_batch::OpenServiceDatabase(
                                        "morgue_db", absl::GetFlag(FLAGS_morgue_db), "required"));
  ASSIGN_OR_RETURN(runtime->appointments,
                   integration::shared_db_batch::OpenServiceDatabase(
                       "appointments_db", absl::GetFlag(FLAGS_appointments_db), "required"));
  runtime->sync = std::make_unique<integration::shared_db_batch::BatchSync>(
      context.database, *runtime->patients,
      std::vector<integration::shared_db_batch::SyncTarget>{
          {"morgue", runtime->morgue.get(), &runtime->morgue_handler},
          {"appointments", runtime->appointments.get(), &runtime->appointments_handler}},
      base::SystemClock(), context.server.metrics(), batch);
  runtime->loop.emplace(interval, [runtime] { (void)runtime->sync->RunOnce(); });
  context.on_shutdown.push_back([runtime] { runtime->loop->Stop(); });
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  const server_kit::ServiceDefinition definition{
      "batch_sync",
      "The shared-database batch job: copies recorded deaths from the patients service's "
      "database into the morgue's and the appointments service's.\n"
      "Usage: batch_sync --patients_db=patients.db --morgue_db=morgue.db "
      "--appointments_db=appointments.db [--sync_interval=1s] [--db=batch_sync.db]",
      "0.0.0.0:50054",
      "none",
      "0.0.0.0:9094",
      "batch_sync.db",
      integration::shared_db_batch::Migrations(),
  };
  return server_kit::ServiceMain(argc, argv, definition, Setup);
}
