// The async module's producer half, in the patients service. Needs: a NATS JetStream server
// (--nats_url and the --nats_stream* flags of messaging/flags.h).
//
// RecordDeath commits the death with a PatientDied event in the outbox and answers
// (local_death_workflow.h); the outbox relay, woken by each commit, publishes the event to the
// stream with its event id as Nats-Msg-Id (messaging/jetstream_publisher.h).
#ifndef HOSPITAL_SRC_INTEGRATION_ASYNC_PRODUCER_H_
#define HOSPITAL_SRC_INTEGRATION_ASYNC_PRODUCER_H_

#include "absl/status/statusor.h"
#include "integration/producer_context.h"
#include "patients/death_workflow.h"

namespace integration::async {

// Connects to NATS, ensures the stream, republishes per --outbox_republish_since, and starts
// the relay (stopped at shutdown). An error names the flag or the broker that failed.
absl::StatusOr<patients::DeathWorkflow*> SetUpProducer(ProducerContext& context);

}  // namespace integration::async

#endif  // HOSPITAL_SRC_INTEGRATION_ASYNC_PRODUCER_H_
