// health_probe: asks a gRPC server's standard health service about one service name, as a
// Kubernetes gRPC probe does. Exit code 0 when SERVING, 1 otherwise (the reason on stderr).
//
//   health_probe --address=127.0.0.1:50052 --service=readiness
#include <cstdio>

#include <grpcpp/create_channel.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"

ABSL_FLAG(std::string, address, "127.0.0.1:50051", "Server to ask, host:port");
ABSL_FLAG(std::string, service, "", "Service name to ask about (\"\" for the server overall)");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(2), "How long to wait for an answer");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Checks grpc.health.v1.Health of a server; exit 0 when SERVING.\n"
      "Usage: health_probe --address=host:port [--service=readiness] [--timeout=2s]");
  absl::ParseCommandLine(argc, argv);
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(absl::GetFlag(FLAGS_address), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::GetFlag(FLAGS_timeout)));
  context.set_wait_for_ready(true);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(absl::GetFlag(FLAGS_service));
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    std::fprintf(stderr, "health check failed: %d %s\n", static_cast<int>(status.error_code()),
                 status.error_message().c_str());
    return 1;
  }
  std::printf("%s\n",
              grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()).c_str());
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}
