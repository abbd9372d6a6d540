#include "integration/consumer_factory.h"

#include <memory>

#include "base/status.h"
#include "hospital/messaging/v1/inbox.grpc.pb.h"
#include "integration/async/consumer.h"
#include "integration/consumer_context.h"
#include "integration/file_drop/consumer.h"
#include "integration/pattern_flag.h"
#include "messaging/inbox_service.h"

namespace integration {

absl::Status SetUpEventConsumer(server_kit::ServiceContext& service, const std::string& durable,
                                messaging::EventHandler& handler, const std::string& fault_method) {
  ASSIGN_OR_RETURN(const Pattern pattern, PatternFromFlags());
  RETURN_IF_ERROR(CheckEngine(pattern, service.database.engine()));
  auto* inbox = service.Keep(
      std::make_unique<messaging::Inbox>(service.database, handler, base::SystemClock()));
  auto* inbox_service = service.Keep(std::make_unique<messaging::InboxService>(*inbox));
  service.server.RegisterService(inbox_service,
                                 hospital::messaging::v1::EventInbox::service_full_name());
  ConsumerContext context{service, *inbox, durable, fault_method};
  switch (pattern) {
    case Pattern::kAsync:
      return async::SetUpConsumer(context);
    case Pattern::kFileDrop:
      return file_drop::SetUpConsumer(context);
    case Pattern::kSync:
    case Pattern::kSharedDbBatch:
    case Pattern::kDirectDbWrite:
      return absl::OkStatus();
  }
  return absl::InternalError("no module for this --death_workflow");
}

}  // namespace integration
