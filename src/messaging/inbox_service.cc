#include "messaging/inbox_service.h"

#include "base/status.h"
#include "server_kit/rpc_support.h"
#include "server_kit/serve.h"

namespace messaging {

namespace v1 = hospital::messaging::v1;

grpc::Status InboxService::ListRejectedEvents(grpc::ServerContext* context,
                                              const v1::ListRejectedEventsRequest* request,
                                              v1::ListRejectedEventsResponse* response) {
  return server_kit::Serve(
      context, response, [&]() -> absl::StatusOr<v1::ListRejectedEventsResponse> {
        ASSIGN_OR_RETURN(const int page_size,
                         server_kit::ValidatePageSize("page_size", request->page_size()));
        ASSIGN_OR_RETURN(const std::string after,
                         server_kit::DecodePageToken("page_token", request->page_token()));
        ASSIGN_OR_RETURN(RejectedEventPage page, inbox_.ListRejected(after, page_size));
        v1::ListRejectedEventsResponse listed;
        server_kit::MovePage(page, listed.mutable_events(), listed.mutable_next_page_token());
        return listed;
      });
}

}  // namespace messaging
