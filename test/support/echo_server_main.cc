// echo_server: the test echo service as a process of its own, the one-hop baseline of the fault
// benchmark's capacity run. Writes "grpc=<port>" to --port_file once serving; stops on SIGTERM.
#include <csignal>
#include <cstdio>
#include <fstream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "support/echo_server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0", "Address to serve on, host:port");
ABSL_FLAG(std::string, metrics_listen, "none",
          "Must be none: the echo server exports no metrics (accepted so that it starts like the "
          "services)");
ABSL_FLAG(std::string, port_file, "", "Where to write grpc=<port> once serving");

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
  testing_support::EchoServer server(nullptr, absl::GetFlag(FLAGS_listen),
                                     /*record_metadata=*/false);
  {
    const std::string path = absl::GetFlag(FLAGS_port_file);
    std::ofstream(path + ".tmp") << "grpc="
                                 << server.address().substr(server.address().rfind(':') + 1)
                                 << "\nmetrics=0\n";
    std::rename((path + ".tmp").c_str(), path.c_str());
  }
  int received = 0;
  sigwait(&signals, &received);
  return 0;
}
