// The sync module's set-up in the patients service. Needs: gRPC channels to the morgue
// (--morgue_address) and the appointments service (--appointments_address), every call through
// the resilience library under --resilience_policy.
//
// Set up in every pattern, not only sync: its background pass finishes what synchronous deaths
// left (owed undo calls and confirmations, workflows a crash left pending), so that a switch to
// another pattern strands nothing; and its breakers stay listable on ResilienceAdmin.
#ifndef HOSPITAL_SRC_INTEGRATION_SYNC_PRODUCER_H_
#define HOSPITAL_SRC_INTEGRATION_SYNC_PRODUCER_H_

#include "absl/status/statusor.h"
#include "integration/producer_context.h"
#include "integration/sync/synchronous_death_workflow.h"

namespace integration::sync {

// The saga, its background pass started (stopped at shutdown), and resilience.v1.ResilienceAdmin
// on the admin listener unless --resilience_admin=false. INVALID_ARGUMENT (or the loader's code)
// naming --resilience_policy for a policy that does not load.
absl::StatusOr<SynchronousDeathWorkflow*> SetUpProducer(ProducerContext& context);

}  // namespace integration::sync

#endif  // HOSPITAL_SRC_INTEGRATION_SYNC_PRODUCER_H_
