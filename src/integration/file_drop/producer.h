// The file_drop module's producer half, in the patients service. Needs: a directory the three
// services share (--file_drop_dir; settings.h).
//
// RecordDeath commits the death with a PatientDied event in the outbox and answers
// (local_death_workflow.h); every --file_drop_interval the outbox relay writes the events
// committed since its last pass as one file (it is not woken per death: the pattern's files are
// batches), and files every consumer has marked done are deleted.
#ifndef HOSPITAL_SRC_INTEGRATION_FILE_DROP_PRODUCER_H_
#define HOSPITAL_SRC_INTEGRATION_FILE_DROP_PRODUCER_H_

#include "absl/status/statusor.h"
#include "integration/producer_context.h"
#include "patients/death_workflow.h"

namespace integration::file_drop {

// Removes the temporaries of files a crash left half written, and starts the relay and the
// clean-up (both stopped at shutdown). INVALID_ARGUMENT naming the flag that is wrong.
absl::StatusOr<patients::DeathWorkflow*> SetUpProducer(ProducerContext& context);

}  // namespace integration::file_drop

#endif  // HOSPITAL_SRC_INTEGRATION_FILE_DROP_PRODUCER_H_
