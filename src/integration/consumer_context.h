// What a consuming service (morgue, appointments) hands the consumer half of the pattern it runs
// (consumer_factory.h): where to apply events, under which names. The module keeps what it builds
// in `service`, starts it, and stops it in `service.on_shutdown`.
#ifndef HOSPITAL_SRC_INTEGRATION_CONSUMER_CONTEXT_H_
#define HOSPITAL_SRC_INTEGRATION_CONSUMER_CONTEXT_H_

#include <string>

#include "messaging/inbox.h"
#include "server_kit/service_main.h"

namespace integration {

struct ConsumerContext {
  server_kit::ServiceContext& service;
  // Applies each event once, with the service's own handler (messaging/inbox.h).
  messaging::Inbox& inbox;
  // The consumer's name: its durable consumer at the broker, its file-drop markers, its metrics.
  std::string durable;
  // The pseudo-method fault rules match for event handling.
  std::string fault_method;
};

}  // namespace integration

#endif  // HOSPITAL_SRC_INTEGRATION_CONSUMER_CONTEXT_H_
