// How a consuming service (morgue, appointments) is handed its part of the integration pattern:
// the binary passes a function that sets up the consumer of the pattern it runs
// (integration::SetUpEventConsumer), so that the service's own code knows no pattern.
#ifndef HOSPITAL_SRC_MESSAGING_EVENT_CONSUMER_H_
#define HOSPITAL_SRC_MESSAGING_EVENT_CONSUMER_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "messaging/inbox.h"
#include "server_kit/service_main.h"

namespace messaging {

// Sets up what delivers events to `handler` (kept in the context by the caller): `durable` names
// the consumer, `fault_method` the pseudo-method fault rules match for event handling.
using EventConsumerSetUp =
    std::function<absl::Status(server_kit::ServiceContext& context, const std::string& durable,
                               EventHandler& handler, const std::string& fault_method)>;

}  // namespace messaging

#endif  // HOSPITAL_SRC_MESSAGING_EVENT_CONSUMER_H_
