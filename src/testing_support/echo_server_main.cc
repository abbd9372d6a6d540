// echo_server: the test echo service as a process of its own, the one-hop baseline of the fault
// benchmark's capacity run. Writes "grpc=<port>" to --port_file once serving; stops on SIGTERM.
// --api=sync serves it with gRPC's synchronous API instead (a thread pool that runs each call
// on a thread of its own, as the hospital services do), to measure what that style costs.
// --fan_out_to=A,B makes it the shape of a RecordDeath without the work: each Echo is forwarded
// to every listed echo server at once (callback API, no retries) and answered when all have
// answered, so the capacity run can show what three RPCs per call cost before any database.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/create_channel.h>
#include <grpcpp/server_builder.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "echo/v1/echo.grpc.pb.h"
#include "testing_support/echo_server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0", "Address to serve on, host:port");
ABSL_FLAG(std::string, metrics_listen, "none",
          "Must be none: the echo server exports no metrics (accepted so that it starts like the "
          "services)");
ABSL_FLAG(std::string, port_file, "", "Where to write grpc=<port> once serving");
ABSL_FLAG(std::string, api, "callback",
          "callback (the test echo server) or sync (gRPC's synchronous API, plain echo)");
ABSL_FLAG(std::string, fan_out_to, "",
          "Comma-separated echo servers (host:port) to forward every Echo to, concurrently; "
          "with --api=callback only");

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

// Forwards each Echo to every downstream at once and answers when the last one has: the first
// failure among them, or the message.
class FanOutEcho final : public echo::v1::EchoService::CallbackService {
 public:
  explicit FanOutEcho(const std::vector<std::string>& downstreams) {
    grpc::ChannelArguments arguments;
    arguments.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    for (const std::string& address : downstreams) {
      stubs_.push_back(echo::v1::EchoService::NewStub(
          grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), arguments)));
    }
  }

  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* context,
                                 const echo::v1::EchoRequest* request,
                                 echo::v1::EchoResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    auto call = std::make_shared<ForwardedCall>(reactor, stubs_.size());
    response->set_message(request->message());
    for (std::size_t i = 0; i < stubs_.size(); ++i) {
      call->contexts[i].set_deadline(context->deadline());
      stubs_[i]->async()->Echo(&call->contexts[i], request, &call->responses[i],
                               [call, i](grpc::Status status) { call->Done(i, status); });
    }
    return reactor;
  }

 private:
  struct ForwardedCall {
    ForwardedCall(grpc::ServerUnaryReactor* server_reactor, std::size_t fan_out)
        : reactor(server_reactor),
          contexts(fan_out),
          responses(fan_out),
          statuses(fan_out),
          remaining(static_cast<int>(fan_out)) {}
    void Done(std::size_t index, grpc::Status status) {
      statuses[index] = std::move(status);
      if (remaining.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
      for (const grpc::Status& each : statuses) {
        if (!each.ok()) {
          reactor->Finish(each);
          return;
        }
      }
      reactor->Finish(grpc::Status::OK);
    }
    grpc::ServerUnaryReactor* const reactor;
    std::vector<grpc::ClientContext> contexts;
    std::vector<echo::v1::EchoResponse> responses;
    std::vector<grpc::Status> statuses;
    std::atomic<int> remaining;
  };
  std::vector<std::unique_ptr<echo::v1::EchoService::Stub>> stubs_;
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
  const std::vector<std::string> fan_out_to =
      absl::StrSplit(absl::GetFlag(FLAGS_fan_out_to), ',', absl::SkipEmpty());
  if (!fan_out_to.empty() && api != "callback") {
    std::fprintf(stderr, "--fan_out_to: only with --api=callback\n");
    return 2;
  }
  std::optional<testing_support::EchoServer> callback_server;
  SynchronousEcho synchronous_echo;
  std::optional<FanOutEcho> fan_out_echo;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  if (!fan_out_to.empty() || api == "sync") {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(absl::GetFlag(FLAGS_listen), grpc::InsecureServerCredentials(), &port);
    if (fan_out_to.empty()) {
      builder.RegisterService(&synchronous_echo);
    } else {
      builder.RegisterService(&fan_out_echo.emplace(fan_out_to));
    }
    server = builder.BuildAndStart();
    if (server == nullptr) {
      std::fprintf(stderr, "cannot listen on %s\n", absl::GetFlag(FLAGS_listen).c_str());
      return 1;
    }
  } else {
    callback_server.emplace(nullptr, absl::GetFlag(FLAGS_listen), /*record_metadata=*/false);
    const std::string address = callback_server->address();
    port = std::stoi(address.substr(address.rfind(':') + 1));
  }
  {
    const std::string path = absl::GetFlag(FLAGS_port_file);
    std::ofstream(path + ".tmp") << "grpc=" << port << "\nmetrics=0\n";
    std::rename((path + ".tmp").c_str(), path.c_str());
  }
  int received = 0;
  sigwait(&signals, &received);
  if (server != nullptr) server->Shutdown(std::chrono::system_clock::now());
  return 0;
}
