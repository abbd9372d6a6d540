// Wires a consuming service (morgue, appointments) for the asynchronous death workflow:
// the inbox over the service's database, the EventInbox admin service (always served, so that
// rejected events stay listable after a switch back to sync), and with --death_workflow=async a
// NATS connection and a durable consumer, started now and stopped on shutdown.
#ifndef HOSPITAL_SRC_MESSAGING_CONSUMER_SETUP_H_
#define HOSPITAL_SRC_MESSAGING_CONSUMER_SETUP_H_

#include <string>

#include "absl/status/status.h"
#include "messaging/inbox.h"
#include "server_kit/service_main.h"

namespace messaging {

// `handler` must outlive the service (keep it in `context`). `durable`: the consumer's name at
// the broker; `fault_method`: the pseudo-method fault rules match for event handling.
absl::Status SetUpEventConsumer(server_kit::ServiceContext& context, const std::string& durable,
                                EventHandler& handler, const std::string& fault_method);

}  // namespace messaging

#endif  // HOSPITAL_SRC_MESSAGING_CONSUMER_SETUP_H_
