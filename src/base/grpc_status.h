// Conversions between absl::Status, which code inside this repository returns, and grpc::Status,
// which crosses the wire. The codes have the same values; the message is kept, binary error
// details are not (nothing here sends them). Use them once, where a call enters or leaves gRPC.
#ifndef HOSPITAL_SRC_BASE_GRPC_STATUS_H_
#define HOSPITAL_SRC_BASE_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace base {

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

inline absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace base

#endif  // HOSPITAL_SRC_BASE_GRPC_STATUS_H_
