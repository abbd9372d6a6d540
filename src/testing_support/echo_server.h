// A real gRPC server on loopback for tests and benchmarks: echo.v1.EchoService, which fails,
// stalls or pushes back as each request asks, and counts the requests it received.
#ifndef HOSPITAL_SRC_TESTING_SUPPORT_ECHO_SERVER_H_
#define HOSPITAL_SRC_TESTING_SUPPORT_ECHO_SERVER_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>

#include "echo/v1/echo.grpc.pb.h"

namespace testing_support {

class EchoServer final {
 public:
  // Starts on `address` (by default 127.0.0.1 with a port picked by the system). Extra
  // services, if any, are served too.
  // With `record_metadata` false it keeps nothing per request (MetadataSeen stays empty), for
  // load tests.
  // `credentials` null: plaintext.
  explicit EchoServer(grpc::Service* extra_service = nullptr,
                      const std::string& address = "127.0.0.1:0", bool record_metadata = true,
                      std::shared_ptr<grpc::ServerCredentials> credentials = nullptr);
  ~EchoServer();

  std::string address() const { return address_; }
  // Echo requests that reached the server.
  int requests_received() const;
  // Echo requests whose caller cancelled them while they stalled.
  int requests_cancelled() const;
  // The values of metadata `key` on every request received, in arrival order.
  std::vector<std::string> MetadataSeen(const std::string& key) const;

 private:
  class Service;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

}  // namespace testing_support

#endif  // HOSPITAL_SRC_TESTING_SUPPORT_ECHO_SERVER_H_
