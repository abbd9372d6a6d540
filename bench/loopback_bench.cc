// Throughput of a wrapped stub against a raw stub over real loopback gRPC, measured side by side
// in one run: rounds alternate raw and wrapped (in ABBA order), each a closed loop with a fixed
// number of calls outstanding, and the report gives each round's rate and the ratio of the medians.
// With --tls_certs it compares plaintext with mutual TLS instead (raw stubs both).
//
//   loopback_bench --rounds=6 --seconds=2 --concurrency=32
//   scripts/make-certs.sh /tmp/certs echo client && loopback_bench --tls_certs=/tmp/certs
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/create_channel.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "echo/v1/echo.grpc.pb.h"
#include "resilience/grpc_call.h"
#include "server_kit/tls.h"
#include "testing_support/echo_server.h"

ABSL_FLAG(int, rounds, 6, "Rounds of each variant; they alternate raw, wrapped, raw, ...");
ABSL_FLAG(double, seconds, 2.0, "Length of one round in seconds");
ABSL_FLAG(int, concurrency, 32, "Calls kept outstanding");
ABSL_FLAG(std::string, only, "",
          "Run only \"raw\" or \"wrapped\" (for profiling one variant with perf)");
ABSL_FLAG(std::string, tls_certs, "",
          "A directory made by `scripts/make-certs.sh DIR echo client`: compare a plaintext "
          "channel and server (\"raw\") with mutual TLS (\"wrapped\" becomes \"tls\"), raw stubs "
          "both");

namespace {

using echo::v1::EchoRequest;
using echo::v1::EchoResponse;

constexpr char kPolicy[] = R"({"defaultTarget": {
  "methodConfig": [{"timeout": "1s", "retryPolicy": {"maxAttempts": 3,
    "initialBackoff": "0.01s", "maxBackoff": "0.1s", "backoffMultiplier": 2}}],
  "retryBudget": {"ratio": 0.1, "minRetriesPerSecond": 10, "maxTokens": 100},
  "circuitBreaker": {"slidingWindowSize": 100, "minimumNumberOfCalls": 20},
  "bulkhead": {"maxConcurrentCalls": 1000}}})";

// Keeps `concurrency` calls outstanding until `end`, each issued by `issue(done)`; returns the
// number of completed successful calls.
template <typename Issue>
long RunClosedLoop(int concurrency, absl::Time end, Issue issue) {
  std::atomic<long> completed{0};
  std::atomic<long> failed{0};
  std::atomic<int> active{concurrency};
  base::Notification all_done;
  std::function<void()> next;
  std::function<void(bool)> on_done = [&](bool ok) {
    (ok ? completed : failed).fetch_add(1, std::memory_order_relaxed);
    if (absl::Now() < end) {
      issue(on_done);
    } else if (active.fetch_sub(1) == 1) {
      all_done.Notify();
    }
  };
  for (int i = 0; i < concurrency; ++i) issue(on_done);
  all_done.WaitForNotification();
  if (failed.load() > 0) std::fprintf(stderr, "warning: %ld calls failed\n", failed.load());
  return completed.load();
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// Runs both variants once, `measure(wrapped)` each, in ABBA order: each variant goes first in
// every other round, so drift in the machine's speed does not favour one of them. `only`
// ("raw" or "wrapped") skips the other.
template <typename Measure>
void RunRound(int round, const std::string& only, Measure measure) {
  const bool wrapped_first = round % 2 == 1;
  for (bool wrapped : {wrapped_first, !wrapped_first}) {
    if (!only.empty() && only != (wrapped ? "wrapped" : "raw")) continue;
    measure(wrapped);
  }
}

void PrintRatios(const std::vector<double>& raw_rates, const std::vector<double>& wrapped_rates,
                 const char* second) {
  const double raw = Median(raw_rates);
  const double wrapped = Median(wrapped_rates);
  // Each round's two runs are adjacent in time, so the ratio within a round cancels the slow
  // drift of a shared machine better than the ratio of the two medians does.
  std::vector<double> round_ratios;
  for (std::size_t i = 0; i < raw_rates.size(); ++i) {
    round_ratios.push_back(wrapped_rates[i] / raw_rates[i]);
  }
  std::printf("median raw %.0f calls/s, %s %.0f calls/s, ratio %s/raw %.3f\n", raw, second, wrapped,
              second, wrapped / raw);
  std::printf("median of the per-round ratios %.3f (lowest %.3f, highest %.3f)\n",
              Median(round_ratios), *std::min_element(round_ratios.begin(), round_ratios.end()),
              *std::max_element(round_ratios.begin(), round_ratios.end()));
}

// Issues one call; `done(ok)` runs when it completes.
using Issue = std::function<void(std::function<void(bool)>&)>;

// A raw asynchronous call on `stub` with a 1 s deadline, copying `request` into per-call state
// (an asynchronous call must keep its request alive until it completes).
Issue RawCalls(echo::v1::EchoService::Stub* stub, const EchoRequest& request) {
  struct RawCall {
    grpc::ClientContext context;
    EchoRequest request;
    EchoResponse response;
  };
  return [stub, request](std::function<void(bool)>& done) {
    auto* call = new RawCall;
    call->request = request;
    call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    stub->async()->Echo(&call->context, &call->request, &call->response,
                        [call, &done](grpc::Status status) {
                          delete call;
                          done(status.ok());
                        });
  };
}

// With --tls_certs: an echo server of its own on mutual TLS and a stub to it.
struct TlsPeer {
  std::unique_ptr<testing_support::EchoServer> server;
  std::unique_ptr<echo::v1::EchoService::Stub> stub;
};
absl::StatusOr<TlsPeer> StartTlsPeer(const std::string& certs) {
  auto server_credentials = server_kit::TlsServerCredentialsFrom(
      {certs + "/echo.crt", certs + "/echo.key", certs + "/ca.crt", absl::Minutes(1)},
      server_kit::ClientCertificates::kRequire);
  auto channel_credentials = server_kit::TlsChannelCredentialsFrom(
      {certs + "/client.crt", certs + "/client.key", certs + "/ca.crt", absl::Minutes(1)});
  if (!server_credentials.ok() || !channel_credentials.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_certs: ", server_credentials.status().ToString(), " ",
                     channel_credentials.status().ToString()));
  }
  TlsPeer peer;
  peer.server = std::make_unique<testing_support::EchoServer>(
      nullptr, "127.0.0.1:0", /*record_metadata=*/false, *server_credentials);
  peer.stub = echo::v1::EchoService::NewStub(
      resilience::CreateChannel(peer.server->address(), *channel_credentials));
  return peer;
}

// The rounds of both variants after a warm-up, each round's rate printed as it ends, then the
// ratios (`second` names the variant compared with raw).
void MeasureRounds(const Issue& raw, const Issue& compared, const char* second) {
  const int rounds = absl::GetFlag(FLAGS_rounds);
  const absl::Duration round_length = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  const int concurrency = absl::GetFlag(FLAGS_concurrency);
  const std::string only = absl::GetFlag(FLAGS_only);
  // Warm up connections and code paths.
  RunClosedLoop(concurrency, absl::Now() + absl::Milliseconds(500), raw);
  RunClosedLoop(concurrency, absl::Now() + absl::Milliseconds(500), compared);
  std::vector<double> raw_rates;
  std::vector<double> compared_rates;
  std::printf("round  variant  calls/s\n");
  for (int round = 0; round < rounds; ++round) {
    RunRound(round, only, [&](bool wrapped) {
      const absl::Time start = absl::Now();
      const long calls = RunClosedLoop(concurrency, start + round_length, wrapped ? compared : raw);
      const double rate = static_cast<double>(calls) / absl::ToDoubleSeconds(absl::Now() - start);
      (wrapped ? compared_rates : raw_rates).push_back(rate);
      std::printf("%5d  %-7s  %.0f\n", round + 1, wrapped ? second : "raw", rate);
    });
  }
  if (only.empty()) PrintRatios(raw_rates, compared_rates, second);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  testing_support::EchoServer server;
  // Both variants use a channel made the same way, so only the wrapping differs.
  auto stub = echo::v1::EchoService::NewStub(resilience::CreateChannel(server.address()));
  EchoRequest request;
  request.set_message("ping");
  const Issue raw = RawCalls(stub.get(), request);

  // With --tls_certs, the second variant is a raw stub to a server of its own on mutual TLS.
  if (const std::string certs = absl::GetFlag(FLAGS_tls_certs); !certs.empty()) {
    absl::StatusOr<TlsPeer> peer = StartTlsPeer(certs);
    if (!peer.ok()) {
      std::fprintf(stderr, "%s\n", std::string(peer.status().message()).c_str());
      return 2;
    }
    MeasureRounds(raw, RawCalls(peer->stub.get(), request), "tls");
    return 0;
  }
  base::RealEnvironment env;
  prometheus::Registry registry;
  resilience::TargetRegistry targets(*resilience::ParsePolicyJson(kPolicy), env.environment(),
                                     registry);
  resilience::GuardedMethod& method = targets.GetTarget("echo").Method("/echo.v1.EchoService/Echo");
  resilience::UnarySender<EchoRequest, EchoResponse> sender =
      [s = stub.get()](grpc::ClientContext* context, const EchoRequest* sent,
                       EchoResponse* response, std::function<void(grpc::Status)> done) {
        s->async()->Echo(context, sent, response, std::move(done));
      };
  const Issue wrapped = [&](std::function<void(bool)>& done) {
    resilience::CallUnary<EchoRequest, EchoResponse>(
        method, sender, request, {},
        [&done](const absl::Status& status, EchoResponse&) { done(status.ok()); });
  };
  MeasureRounds(raw, wrapped, "wrapped");
  return 0;
}
