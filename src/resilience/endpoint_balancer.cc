#include "resilience/endpoint_balancer.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace resilience {

EndpointBalancer::EndpointBalancer(LoadBalancingConfig balancing,
                                   OutlierDetectionConfig outlier_detection,
                                   base::Environment environment)
    : balancing_(balancing), outlier_detection_(outlier_detection), environment_(environment) {}

EndpointBalancer::~EndpointBalancer() = default;

void EndpointBalancer::SetAddresses(const std::vector<std::string>& addresses) {
  base::MutexLock lock(&mutex_);
  std::map<std::string, std::shared_ptr<Endpoint>> current;
  for (std::shared_ptr<Endpoint>& endpoint : endpoints_) {
    current.emplace(endpoint->address(), std::move(endpoint));
  }
  endpoints_.clear();
  for (const std::string& address : addresses) {
    auto kept = current.find(address);
    if (kept != current.end()) {
      endpoints_.push_back(std::move(kept->second));
      current.erase(kept);
    } else if (std::none_of(endpoints_.begin(), endpoints_.end(),
                            [&](const auto& endpoint) { return endpoint->address() == address; })) {
      endpoints_.push_back(std::make_shared<Endpoint>(address));
    }
  }
  // Attempts still on a dropped endpoint hold it; their results no longer count.
  for (auto& [address, dropped] : current) dropped->removed_ = true;
}

void EndpointBalancer::SetReachable(const std::string& address, bool reachable) {
  base::MutexLock lock(&mutex_);
  for (const std::shared_ptr<Endpoint>& endpoint : endpoints_) {
    if (endpoint->address() == address) endpoint->reachable_ = reachable;
  }
}

double EndpointBalancer::Cost(const Endpoint& endpoint, absl::Time now) const {
  switch (balancing_.policy) {
    case BalancingPolicy::kLeastRequest:
      return endpoint.in_flight_;
    case BalancingPolicy::kPeakEwma:
    case BalancingPolicy::kRoundRobin: {
      // Seen decaying while idle, so that a slow endpoint is tried again after a while. A
      // tiny floor lets requests in flight count before the first result.
      const double idle = absl::ToDoubleSeconds(now - endpoint.latency_time_);
      const double decayed =
          endpoint.latency_seconds_ *
          std::exp(-std::max(0.0, idle) / absl::ToDoubleSeconds(balancing_.decay));
      return (endpoint.in_flight_ + 1) * (decayed + 1e-6);
    }
  }
  return 0;
}

EndpointBalancer::Attempt EndpointBalancer::Pick(const std::vector<const Endpoint*>& avoid) {
  const absl::Time now = environment_.clock->Now();
  base::MutexLock lock(&mutex_);
  if (endpoints_.empty()) return {nullptr, now};
  Readmit(now);
  const auto avoided = [&](const Endpoint& endpoint) {
    return std::find(avoid.begin(), avoid.end(), &endpoint) != avoid.end();
  };
  // The rules, strictest first: each later tier drops one (see the header).
  std::vector<Endpoint*> candidates;
  for (int tier = 0; tier < 4 && candidates.empty(); ++tier) {
    for (const std::shared_ptr<Endpoint>& endpoint : endpoints_) {
      if (tier < 3 && endpoint->ejected_) continue;
      if (tier < 2 && !endpoint->reachable_) continue;
      if (tier < 1 && avoided(*endpoint)) continue;
      candidates.push_back(endpoint.get());
    }
  }
  Endpoint* chosen = candidates.front();
  if (balancing_.policy == BalancingPolicy::kRoundRobin) {
    chosen = candidates[next_round_robin_++ % candidates.size()];
  } else if (candidates.size() > 1) {
    const std::size_t n = candidates.size();
    const double count = static_cast<double>(n);
    const std::size_t first =
        std::min(n - 1, static_cast<std::size_t>(environment_.random->Uniform01() * count));
    std::size_t second =
        std::min(n - 2, static_cast<std::size_t>(environment_.random->Uniform01() * (count - 1)));
    if (second >= first) ++second;
    chosen = Cost(*candidates[second], now) < Cost(*candidates[first], now) ? candidates[second]
                                                                            : candidates[first];
  }
  ++chosen->in_flight_;
  for (const std::shared_ptr<Endpoint>& endpoint : endpoints_) {
    if (endpoint.get() == chosen) return {endpoint, now};
  }
  return {nullptr, now};  // Unreachable: `chosen` is one of endpoints_.
}

void EndpointBalancer::Finish(const Attempt& attempt, absl::StatusCode code, bool cut_by_caller) {
  if (attempt.endpoint == nullptr) return;
  const absl::Time now = environment_.clock->Now();
  base::MutexLock lock(&mutex_);
  Endpoint& endpoint = *attempt.endpoint;
  --endpoint.in_flight_;
  if (endpoint.removed_) return;
  const double rtt = std::max(0.0, absl::ToDoubleSeconds(now - attempt.start));
  if (cut_by_caller) {
    // It took at least this long (a losing hedge on a slow endpoint): that may raise the
    // estimate, never lower it, and says nothing about failure.
    if (rtt > endpoint.latency_seconds_) {
      endpoint.latency_seconds_ = rtt;
      endpoint.latency_time_ = now;
    }
    return;
  }
  ++endpoint.attempts_;
  if (rtt > endpoint.latency_seconds_) {
    endpoint.latency_seconds_ = rtt;  // The peak, at once.
  } else {
    const double weight =
        std::exp(-std::max(0.0, absl::ToDoubleSeconds(now - endpoint.latency_time_)) /
                 absl::ToDoubleSeconds(balancing_.decay));
    endpoint.latency_seconds_ = endpoint.latency_seconds_ * weight + rtt * (1 - weight);
  }
  endpoint.latency_time_ = now;
  if (!outlier_detection_.failure_codes.Contains(code)) {
    endpoint.consecutive_failures_ = 0;
    ++endpoint.interval_successes_;
    return;
  }
  ++endpoint.failures_;
  ++endpoint.interval_failures_;
  ++endpoint.consecutive_failures_;
  if (outlier_detection_.enabled && outlier_detection_.consecutive_failures > 0 &&
      endpoint.consecutive_failures_ >= outlier_detection_.consecutive_failures) {
    MaybeEject(endpoint, now);
  }
}

void EndpointBalancer::MaybeEject(Endpoint& endpoint, absl::Time now) {
  if (endpoint.ejected_) return;
  const int ejected = static_cast<int>(std::count_if(
      endpoints_.begin(), endpoints_.end(), [](const auto& other) { return other->ejected_; }));
  const int total = static_cast<int>(endpoints_.size());
  // Ejecting it must leave the ejected share within the cap; the first may always go.
  if (ejected > 0 && (ejected + 1) * 100 > outlier_detection_.max_ejection_percent * total) {
    return;
  }
  endpoint.ejected_ = true;
  endpoint.consecutive_failures_ = 0;
  ++endpoint.ejection_multiplier_;
  ++endpoint.times_ejected_;
  endpoint.ejected_since_ = now;
  const absl::Duration longest =
      std::max(outlier_detection_.base_ejection_time, outlier_detection_.max_ejection_time);
  endpoint.ejected_until_ =
      now +
      std::min(outlier_detection_.base_ejection_time * endpoint.ejection_multiplier_, longest);
}

void EndpointBalancer::Readmit(absl::Time now) {
  for (const std::shared_ptr<Endpoint>& endpoint : endpoints_) {
    if (endpoint->ejected_ && now >= endpoint->ejected_until_) endpoint->ejected_ = false;
  }
}

void EndpointBalancer::Sweep() {
  const absl::Time now = environment_.clock->Now();
  base::MutexLock lock(&mutex_);
  Readmit(now);
  const OutlierDetectionConfig& config = outlier_detection_;
  if (config.enabled && config.failure_percentage_threshold > 0) {
    std::vector<Endpoint*> with_volume;
    for (const std::shared_ptr<Endpoint>& endpoint : endpoints_) {
      if (endpoint->interval_successes_ + endpoint->interval_failures_ >=
          config.failure_percentage_request_volume) {
        with_volume.push_back(endpoint.get());
      }
    }
    if (static_cast<int>(with_volume.size()) >= config.failure_percentage_minimum_hosts) {
      for (Endpoint* endpoint : with_volume) {
        const std::int64_t results = endpoint->interval_successes_ + endpoint->interval_failures_;
        if (endpoint->interval_failures_ * 100 >= config.failure_percentage_threshold * results) {
          MaybeEject(*endpoint, now);
        }
      }
    }
  }
  for (const std::shared_ptr<Endpoint>& endpoint : endpoints_) {
    if (!endpoint->ejected_ && endpoint->ejection_multiplier_ > 0) {
      --endpoint->ejection_multiplier_;
    }
    endpoint->interval_successes_ = 0;
    endpoint->interval_failures_ = 0;
  }
}

std::vector<EndpointSnapshot> EndpointBalancer::Snapshot() const {
  const absl::Time now = environment_.clock->Now();
  base::MutexLock lock(&mutex_);
  std::vector<EndpointSnapshot> snapshot;
  for (const std::shared_ptr<Endpoint>& endpoint : endpoints_) {
    EndpointSnapshot& entry = snapshot.emplace_back();
    entry.address = endpoint->address();
    entry.ejected = endpoint->ejected_ && now < endpoint->ejected_until_;
    if (entry.ejected) {
      entry.ejected_since = endpoint->ejected_since_;
      entry.ejected_until = endpoint->ejected_until_;
    }
    entry.times_ejected = endpoint->times_ejected_;
    entry.reachable = endpoint->reachable_;
    entry.in_flight = endpoint->in_flight_;
    entry.latency = absl::Seconds(endpoint->latency_seconds_);
    entry.attempts = endpoint->attempts_;
    entry.failures = endpoint->failures_;
  }
  return snapshot;
}

int EndpointBalancer::size() const {
  base::MutexLock lock(&mutex_);
  return static_cast<int>(endpoints_.size());
}

}  // namespace resilience
