// Turns a request that gRPC could not parse into INVALID_ARGUMENT that says so.
//
// gRPC's generated code parses the request before any handler runs; when parsing fails (most
// often a string field that is not valid UTF-8, which proto3 requires) the sync server answers
// INTERNAL with an empty message, which tells an operator nothing and blames the server. This
// interceptor notices the missing request and rewrites the status sent: INVALID_ARGUMENT naming
// the request type. When no request message arrived at all (gRPC's INTERNAL "No payload": the
// stream ended before the message), it is UNAVAILABLE instead, a transient failure that a
// caller may retry. Either way the handler never ran, so nothing changed.
#ifndef HOSPITAL_SRC_SERVER_KIT_MALFORMED_REQUEST_H_
#define HOSPITAL_SRC_SERVER_KIT_MALFORMED_REQUEST_H_

#include <grpcpp/support/server_interceptor.h>

namespace server_kit {

class MalformedRequestInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;
};

}  // namespace server_kit

#endif  // HOSPITAL_SRC_SERVER_KIT_MALFORMED_REQUEST_H_
