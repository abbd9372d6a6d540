// The endpoints of one target over gRPC: the addresses its address names, a channel to each,
// and the EndpointBalancer (endpoint_balancer.h) that picks among them and ejects.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<resilience::EndpointSet> morgue,
//                    resilience::EndpointSet::Create(targets.GetTarget("morgue"),
//                                                    "dns:///morgue.hospital.svc:50052"));
//   auto send = resilience::UnaryMethod<AdmitRequest, AdmitResponse>(
//       "/hospital.morgue.v1.MorgueService/AdmitDeceased");
//   resilience::CallUnary<AdmitRequest, AdmitResponse>(admit, *morgue, send, request, options,
//                                                      done);
//
// Addresses, in gRPC's name syntax:
//   ipv4:10.0.0.1:50052,10.0.0.2:50052      these endpoints (ipv6:[::1]:50052,... likewise)
//   dns:///morgue.hospital.svc:50052         every address the name resolves to (a headless
//                                            Service's pods), resolved again every
//                                            loadBalancing.reResolutionInterval, so that a
//                                            replaced pod's new address is used within it
//   anything else (localhost:50052)          one endpoint, resolved by gRPC's own channel
// Each endpoint has its own channel (CreateChannel: no gRPC retries, short reconnection
// backoff) connecting to that address only, with the name as its authority, so that TLS
// verifies the certificate against the name rather than the pod's address.
//
// gRPC's own client-side balancing (round_robin, and outlier_detection_experimental in 1.51,
// behind GRPC_EXPERIMENTAL_ENABLE_OUTLIER_DETECTION) works inside one channel and could not do
// what this does: send a retry or a hedge to another endpoint than the one that failed or is
// slow (the pick is the policy's, the caller has no say), weigh endpoints by latency (1.51 has
// no least-request or EWMA policy), eject at once after consecutive failures (its ejections
// wait for the interval), or tell metrics and the admin service which endpoint is ejected.
//
// Every interval (outlierDetection.interval, else 0.5 s) a timer on the target's scheduler runs
// the balancer's sweep and asks each channel for its state (connecting an idle one): an
// endpoint whose channel is in TRANSIENT_FAILURE (connection refused, unreachable) is
// unreachable for the balancer until its channel recovers. A dns: address is resolved on a
// thread of its own (getaddrinfo blocks); a failed or empty resolution keeps the endpoints
// known, and is counted in resolution_failures().
//
// Thread-safe. The Target must outlive this object; calls using it must end before it goes.
#ifndef HOSPITAL_SRC_RESILIENCE_ENDPOINT_SET_H_
#define HOSPITAL_SRC_RESILIENCE_ENDPOINT_SET_H_

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "base/sync.h"
#include "resilience/endpoint_balancer.h"
#include "resilience/target.h"

namespace resilience {

// What an address names (see the file comment): the endpoints it lists, or the name to resolve.
struct ParsedAddress {
  enum class Kind { kList, kDns, kSingle };
  Kind kind = Kind::kSingle;
  // kList: one gRPC target per endpoint ("ipv4:10.0.0.1:50052"); kSingle: the address itself.
  std::vector<std::string> endpoints;
  // kDns: the host and port to resolve; also the authority of every endpoint's channel.
  std::string host;
  std::string port;
};
// INVALID_ARGUMENT naming the part of `address` that is wrong.
absl::StatusOr<ParsedAddress> ParseAddress(const std::string& address);

class EndpointSet final {
 public:
  // The endpoint set of `target`, balanced and ejected by its policy (loadBalancing,
  // outlierDetection), timed by its environment. INVALID_ARGUMENT if `address` is malformed.
  static absl::StatusOr<std::unique_ptr<EndpointSet>> Create(
      Target& target, const std::string& address,
      std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials(),
      grpc::ChannelArguments arguments = {});
  ~EndpointSet();
  EndpointSet(const EndpointSet&) = delete;
  EndpointSet& operator=(const EndpointSet&) = delete;

  struct Choice {
    EndpointBalancer::Attempt attempt;
    std::shared_ptr<grpc::Channel> channel;  // Null only when there is no endpoint.
  };
  // The endpoint and channel of the next attempt (EndpointBalancer::Pick).
  Choice Pick(const std::vector<const EndpointBalancer::Endpoint*>& avoid);
  // The attempt's result (EndpointBalancer::Finish).
  void Finish(const EndpointBalancer::Attempt& attempt, absl::StatusCode code, bool cut_by_caller);

  const std::string& address() const { return address_; }
  EndpointBalancer& balancer() { return *state_->balancer; }
  std::int64_t resolution_failures() const {
    return state_->resolution_failures.load(std::memory_order_relaxed);
  }
  // Resolves a dns: address now, on the calling thread (the resolver thread does it every
  // interval); does nothing for other addresses.
  void ResolveNow();

 private:
  // What the sweep timer and the resolver reach through weak references, so that neither
  // outlives the set.
  struct State {
    std::shared_ptr<EndpointBalancer> balancer;
    std::shared_ptr<grpc::ChannelCredentials> credentials;
    grpc::ChannelArguments arguments;
    bool single = false;  // The address is one endpoint, given to gRPC as it is.
    base::Mutex mutex;
    std::map<std::string, std::shared_ptr<grpc::Channel>> channels ABSL_GUARDED_BY(mutex);
    std::atomic<std::int64_t> resolution_failures{0};
  };

  EndpointSet(Target& target, std::string address, ParsedAddress parsed,
              std::shared_ptr<State> state);
  // Makes the channels of `endpoints` (dropping the others) and tells the balancer.
  static void UseEndpoints(State& state, const std::vector<std::string>& endpoints);
  static void ScheduleSweep(const std::shared_ptr<State>& state, base::Environment environment,
                            absl::Duration interval);
  void ResolverLoop();

  Target& target_;
  const std::string address_;
  const ParsedAddress parsed_;
  const std::shared_ptr<State> state_;

  base::Mutex resolver_mutex_;
  base::CondVar resolver_wake_;
  bool stopping_ ABSL_GUARDED_BY(resolver_mutex_) = false;
  std::optional<std::thread> resolver_;
};

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_ENDPOINT_SET_H_
