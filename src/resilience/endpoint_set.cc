#include "resilience/endpoint_set.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <set>
#include <utility>

#include <arpa/inet.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security_constants.h>
#include <grpcpp/create_channel.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "resilience/grpc_call.h"

namespace resilience {
namespace {

absl::Status Malformed(const std::string& address, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("address \"", address, "\": ", problem));
}

bool ValidPort(absl::string_view port) {
  int value = 0;
  return absl::SimpleAtoi(port, &value) && value > 0 && value < 65536;
}

// "host:port" or "[v6]:port" split at the last colon; false if either part is missing.
bool SplitHostPort(absl::string_view hostport, std::string& host, std::string& port) {
  const std::size_t colon = hostport.rfind(':');
  if (colon == absl::string_view::npos || colon == 0 || colon + 1 == hostport.size()) return false;
  host = std::string(hostport.substr(0, colon));
  port = std::string(hostport.substr(colon + 1));
  if (host.front() == '[') {
    if (host.back() != ']') return false;
    host = host.substr(1, host.size() - 2);
  }
  return !host.empty() && ValidPort(port);
}

// The gRPC target of one endpoint's channel.
std::string ChannelTargetOf(const std::string& endpoint, bool single) {
  if (single) return endpoint;
  return absl::StrCat(absl::StartsWith(endpoint, "[") ? "ipv6:" : "ipv4:", endpoint);
}

// getaddrinfo's addresses for host and port, as "10.0.0.1:50052" and "[fd00::1]:50052", sorted
// and without repeats.
absl::StatusOr<std::vector<std::string>> Resolve(const std::string& host, const std::string& port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int error = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); error != 0) {
    return absl::UnavailableError(absl::StrCat("resolving \"", host, "\": ", gai_strerror(error)));
  }
  std::set<std::string> addresses;
  for (const addrinfo* entry = found; entry != nullptr; entry = entry->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    if (entry->ai_family == AF_INET) {
      const auto* ip = reinterpret_cast<const sockaddr_in*>(entry->ai_addr);
      if (inet_ntop(AF_INET, &ip->sin_addr, text, sizeof text) != nullptr) {
        addresses.insert(absl::StrCat(text, ":", port));
      }
    } else if (entry->ai_family == AF_INET6) {
      const auto* ip = reinterpret_cast<const sockaddr_in6*>(entry->ai_addr);
      if (inet_ntop(AF_INET6, &ip->sin6_addr, text, sizeof text) != nullptr) {
        addresses.insert(absl::StrCat("[", text, "]:", port));
      }
    }
  }
  freeaddrinfo(found);
  if (addresses.empty()) {
    return absl::UnavailableError(absl::StrCat("\"", host, "\" resolved to no address"));
  }
  return std::vector<std::string>(addresses.begin(), addresses.end());
}

}  // namespace

absl::StatusOr<ParsedAddress> ParseAddress(const std::string& address) {
  ParsedAddress parsed;
  std::string host;
  std::string port;
  for (const char* scheme : {"ipv4:", "ipv6:"}) {
    if (!absl::StartsWith(address, scheme)) continue;
    parsed.kind = ParsedAddress::Kind::kList;
    const absl::string_view list = absl::string_view(address).substr(5);
    if (list.empty()) return Malformed(address, "names no endpoint");
    const bool v6 = scheme[3] == '6';
    for (absl::string_view entry : absl::StrSplit(list, ',')) {
      if (!SplitHostPort(entry, host, port) || v6 != (entry.front() == '[')) {
        return Malformed(address, absl::StrCat("\"", entry, "\" is not ",
                                               v6 ? "[address]:port" : "address:port"));
      }
      parsed.endpoints.emplace_back(entry);
    }
    return parsed;
  }
  if (absl::StartsWith(address, "dns:")) {
    absl::string_view rest = absl::string_view(address).substr(4);
    if (absl::StartsWith(rest, "//")) {  // dns://[authority]/host:port; the authority is ignored.
      const std::size_t slash = rest.find('/', 2);
      if (slash == absl::string_view::npos) return Malformed(address, "has no host:port");
      rest = rest.substr(slash + 1);
    }
    if (!SplitHostPort(rest, parsed.host, parsed.port)) {
      return Malformed(address, "needs host:port with a port from 1 to 65535 after dns:");
    }
    parsed.kind = ParsedAddress::Kind::kDns;
    return parsed;
  }
  if (address.empty()) return Malformed(address, "is empty");
  parsed.kind = ParsedAddress::Kind::kSingle;
  parsed.endpoints = {address};
  return parsed;
}

absl::StatusOr<std::unique_ptr<EndpointSet>> EndpointSet::Create(
    Target& target, const std::string& address,
    std::shared_ptr<grpc::ChannelCredentials> credentials, grpc::ChannelArguments arguments) {
  absl::StatusOr<ParsedAddress> parsed = ParseAddress(address);
  if (!parsed.ok()) return parsed.status();
  auto state = std::make_shared<State>();
  state->balancer = std::make_shared<EndpointBalancer>(
      target.policy().balancing, target.policy().outlier_detection, target.environment());
  state->credentials = std::move(credentials);
  state->single = parsed->kind == ParsedAddress::Kind::kSingle;
  if (parsed->kind == ParsedAddress::Kind::kDns) {
    // Certificates name the service, not the pod: verify against the name.
    arguments.SetString(GRPC_ARG_DEFAULT_AUTHORITY, absl::StrCat(parsed->host, ":", parsed->port));
    arguments.SetSslTargetNameOverride(parsed->host);
  }
  state->arguments = std::move(arguments);
  return std::unique_ptr<EndpointSet>(
      new EndpointSet(target, address, *std::move(parsed), std::move(state)));
}

EndpointSet::EndpointSet(Target& target, std::string address, ParsedAddress parsed,
                         std::shared_ptr<State> state)
    : target_(target),
      address_(std::move(address)),
      parsed_(std::move(parsed)),
      state_(std::move(state)) {
  if (parsed_.kind == ParsedAddress::Kind::kDns) {
    ResolveNow();  // Endpoints before the first call, when the name resolves.
    resolver_.emplace([this] { ResolverLoop(); });
  } else {
    UseEndpoints(*state_, parsed_.endpoints);
  }
  target_.AttachBalancer(state_->balancer);
  // As ReconnectBeforeProbes (grpc_call.h), for every endpoint's channel: when the target's
  // breaker opens, reset the channels' reconnection backoff shortly before the probes go.
  std::weak_ptr<State> weak = state_;
  const base::Environment environment = target_.environment();
  target_.AddStateListener([weak, &target = target_, environment](BreakerState, BreakerState to) {
    if (to != BreakerState::kOpen || weak.expired()) return;
    const absl::Time now = environment.clock->Now();
    const absl::Time open_until = target.breaker().Snapshot().open_until;
    const absl::Time reset_at = open_until - std::min(kReconnectLead, (open_until - now) / 2);
    environment.scheduler->RunAt(reset_at, [weak] {
      std::shared_ptr<State> alive = weak.lock();
      if (alive == nullptr) return;
      base::MutexLock lock(&alive->mutex);
      for (const auto& [endpoint, channel] : alive->channels) {
        grpc::experimental::ChannelResetConnectionBackoff(channel.get());
      }
    });
  });
  const OutlierDetectionConfig& outlier = target_.policy().outlier_detection;
  ScheduleSweep(state_, target_.environment(),
                outlier.enabled ? outlier.interval : absl::Milliseconds(500));
}

EndpointSet::~EndpointSet() {
  {
    base::MutexLock lock(&resolver_mutex_);
    stopping_ = true;
    resolver_wake_.SignalAll();
  }
  if (resolver_ && resolver_->joinable()) resolver_->join();
  target_.DetachBalancer(state_->balancer.get());
  // The sweep timer holds the state weakly: once this reference goes, it stops.
}

void EndpointSet::UseEndpoints(State& state, const std::vector<std::string>& endpoints) {
  {
    base::MutexLock lock(&state.mutex);
    std::map<std::string, std::shared_ptr<grpc::Channel>> channels;
    for (const std::string& endpoint : endpoints) {
      auto kept = state.channels.find(endpoint);
      channels[endpoint] = kept != state.channels.end()
                               ? kept->second
                               : CreateChannel(ChannelTargetOf(endpoint, state.single),
                                               state.credentials, state.arguments);
    }
    state.channels = std::move(channels);
  }
  state.balancer->SetAddresses(endpoints);
}

void EndpointSet::ScheduleSweep(const std::shared_ptr<State>& state, base::Environment environment,
                                absl::Duration interval) {
  std::weak_ptr<State> weak = state;
  environment.scheduler->RunAt(environment.clock->Now() + interval, [weak, environment, interval] {
    std::shared_ptr<State> alive = weak.lock();
    if (alive == nullptr) return;
    alive->balancer->Sweep();
    std::vector<std::pair<std::string, std::shared_ptr<grpc::Channel>>> channels;
    {
      base::MutexLock lock(&alive->mutex);
      channels.assign(alive->channels.begin(), alive->channels.end());
    }
    for (const auto& [endpoint, channel] : channels) {
      // Asking connects an idle channel, so that a restarted endpoint is found again.
      const grpc_connectivity_state connectivity = channel->GetState(/*try_to_connect=*/true);
      alive->balancer->SetReachable(endpoint, connectivity != GRPC_CHANNEL_TRANSIENT_FAILURE);
    }
    ScheduleSweep(alive, environment, interval);
  });
}

void EndpointSet::ResolveNow() {
  if (parsed_.kind != ParsedAddress::Kind::kDns) return;
  absl::StatusOr<std::vector<std::string>> resolved = Resolve(parsed_.host, parsed_.port);
  if (!resolved.ok()) {
    state_->resolution_failures.fetch_add(1, std::memory_order_relaxed);
    return;  // Keep the endpoints known: a resolver hiccup must not empty the target.
  }
  UseEndpoints(*state_, *resolved);
}

void EndpointSet::ResolverLoop() {
  const absl::Duration interval = target_.policy().balancing.re_resolution_interval;
  while (true) {
    {
      base::MutexLock lock(&resolver_mutex_);
      const absl::Time until = absl::Now() + interval;
      while (!stopping_ && absl::Now() < until)
        resolver_wake_.WaitWithDeadline(&resolver_mutex_, until);
      if (stopping_) return;
    }
    ResolveNow();
  }
}

EndpointSet::Choice EndpointSet::Pick(const std::vector<const EndpointBalancer::Endpoint*>& avoid) {
  Choice choice{state_->balancer->Pick(avoid), nullptr};
  if (choice.attempt.endpoint == nullptr) return choice;
  base::MutexLock lock(&state_->mutex);
  const auto channel = state_->channels.find(choice.attempt.endpoint->address());
  if (channel != state_->channels.end()) choice.channel = channel->second;
  return choice;
}

void EndpointSet::Finish(const EndpointBalancer::Attempt& attempt, absl::StatusCode code,
                         bool cut_by_caller) {
  state_->balancer->Finish(attempt, code, cut_by_caller);
}

}  // namespace resilience
