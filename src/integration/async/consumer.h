// The async module's consumer half, in the morgue and the appointments service. Needs: a NATS
// JetStream server (--nats_url, the stream and consumer flags of messaging/flags.h).
//
// A durable pull consumer named after the service fetches PatientDied events and applies each
// batch in one inbox transaction before it acknowledges them (messaging/jetstream_consumer.h).
#ifndef HOSPITAL_SRC_INTEGRATION_ASYNC_CONSUMER_H_
#define HOSPITAL_SRC_INTEGRATION_ASYNC_CONSUMER_H_

#include "absl/status/status.h"
#include "integration/consumer_context.h"

namespace integration::async {

// Connects to NATS and starts the consumer (stopped at shutdown). An error names the flag or
// the broker that failed.
absl::Status SetUpConsumer(ConsumerContext& context);

}  // namespace integration::async

#endif  // HOSPITAL_SRC_INTEGRATION_ASYNC_CONSUMER_H_
