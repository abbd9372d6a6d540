// hospital.messaging.v1.EventInbox over an Inbox: operators list the events a consumer could
// not apply (grpcurl ... hospital.messaging.v1.EventInbox/ListRejectedEvents).
#ifndef HOSPITAL_SRC_MESSAGING_INBOX_SERVICE_H_
#define HOSPITAL_SRC_MESSAGING_INBOX_SERVICE_H_

#include "hospital/messaging/v1/inbox.grpc.pb.h"
#include "messaging/inbox.h"

namespace messaging {

class InboxService final : public hospital::messaging::v1::EventInbox::Service {
 public:
  explicit InboxService(Inbox& inbox) : inbox_(inbox) {}

  grpc::Status ListRejectedEvents(
      grpc::ServerContext* context,
      const hospital::messaging::v1::ListRejectedEventsRequest* request,
      hospital::messaging::v1::ListRejectedEventsResponse* response) override;

 private:
  Inbox& inbox_;
};

}  // namespace messaging

#endif  // HOSPITAL_SRC_MESSAGING_INBOX_SERVICE_H_
