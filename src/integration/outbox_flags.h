// The flag the two patterns with an outbox relay share (async, file_drop):
//   --outbox_retention   how long published events stay in the outbox table
#ifndef HOSPITAL_SRC_INTEGRATION_OUTBOX_FLAGS_H_
#define HOSPITAL_SRC_INTEGRATION_OUTBOX_FLAGS_H_

#include "messaging/outbox_relay.h"

namespace integration {

// The relay's options with --outbox_retention set; the rest at their defaults.
messaging::OutboxRelayOptions OutboxRelayOptionsFromFlags();

}  // namespace integration

#endif  // HOSPITAL_SRC_INTEGRATION_OUTBOX_FLAGS_H_
