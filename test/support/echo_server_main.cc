// echo_server: the test echo service as a process of its own, the one-hop baseline of the fault
// benchmark's capacity run. Writes "grpc=<port>" to --port_file once serving; stops on SIGTERM.
// --api=sync serves it with gRPC's synchronous API instead (a thread pool that runs each call
// on a thread of its own, as the hospital services do), to measure what that style costs.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include <grpcpp/server_builder.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "echo/v1/echo.grpc.pb.h"
#include "support/echo_server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0", "Address to serve on, host:port");
ABSL_FLAG(std::string, metrics_listen, "none",
          "Must be none: the echo server exports no metrics (accepted so that it starts like the "
          "services)");
ABSL_FLAG(std::string, port_file, "", "Where to write grpc=<port> once serving");
ABSL_FLAG(std::string, api, "callback",
          "callback (the test echo server) or sync (gRPC's synchronous API, plain echo)");

namespace {

// Echo with the synchronous API and nothing else: no interceptors, no metrics.
class SynchronousEcho final : public echo::v1::EchoService::Service {
 public:
  grpc::Status Echo(grpc::ServerContext*, const echo::v1::EchoRequest* request,
                    echo::v1::EchoResponse* response) override {
    response->set_message(request->message());
    return grpc::Status::OK;
  }
};

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Serves echo.v1.EchoService on 127.0.0.1 and a free port.");
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_metrics_listen) != "none") {
    std::fprintf(stderr, "--metrics_listen: the echo server exports no metrics; pass none\n");
    return 2;
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  const std::string api = absl::GetFlag(FLAGS_api);
  if (api != "callback" && api != "sync") {
    std::fprintf(stderr, "--api: must be callback or sync, got \"%s\"\n", api.c_str());
    return 2;
  }
  std::optional<testing_support::EchoServer> callback_server;
  SynchronousEcho synchronous_echo;
  std::unique_ptr<grpc::Server> synchronous_server;
  int port = 0;
  if (api == "callback") {
    callback_server.emplace(nullptr, absl::GetFlag(FLAGS_listen), /*record_metadata=*/false);
    const std::string address = callback_server->address();
    port = std::stoi(address.substr(address.rfind(':') + 1));
  } else {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(absl::GetFlag(FLAGS_listen), grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&synchronous_echo);
    synchronous_server = builder.BuildAndStart();
    if (synchronous_server == nullptr) {
      std::fprintf(stderr, "cannot listen on %s\n", absl::GetFlag(FLAGS_listen).c_str());
      return 1;
    }
  }
  {
    const std::string path = absl::GetFlag(FLAGS_port_file);
    std::ofstream(path + ".tmp") << "grpc=" << port << "\nmetrics=0\n";
    std::rename((path + ".tmp").c_str(), path.c_str());
  }
  int received = 0;
  sigwait(&signals, &received);
  if (synchronous_server != nullptr) synchronous_server->Shutdown(std::chrono::system_clock::now());
  return 0;
}
