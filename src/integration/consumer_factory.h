// The consuming services' side of every pattern (morgue, appointments): reads --death_workflow
// once and sets up the pattern's consumer half (async/consumer.h, file_drop/consumer.h); sync
// and the shared-disk patterns need none (calls arrive as RPCs; other processes write the
// database). In every pattern: the inbox over the service's database and the EventInbox admin
// service, so that rejected events stay listable after a switch of pattern.
#ifndef HOSPITAL_SRC_INTEGRATION_CONSUMER_FACTORY_H_
#define HOSPITAL_SRC_INTEGRATION_CONSUMER_FACTORY_H_

#include <string>

#include "absl/status/status.h"
#include "messaging/inbox.h"
#include "server_kit/service_main.h"

namespace integration {

// `handler` must outlive the service (keep it in `service`). `durable`: the consumer's name (at
// the broker, on its file-drop markers); `fault_method`: the pseudo-method fault rules match for
// event handling. An error names the flag that is wrong or the broker that could not be reached.
absl::Status SetUpEventConsumer(server_kit::ServiceContext& service, const std::string& durable,
                                messaging::EventHandler& handler, const std::string& fault_method);

}  // namespace integration

#endif  // HOSPITAL_SRC_INTEGRATION_CONSUMER_FACTORY_H_
