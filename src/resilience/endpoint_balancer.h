// Spreads one target's attempts over its endpoints (the replicas behind it) and ejects the ones
// that fail, independent of the transport.
//
//   EndpointBalancer balancer(lb_config, outlier_config, environment);
//   balancer.SetAddresses({"10.0.0.1:50052", "10.0.0.2:50052", "10.0.0.3:50052"});
//   EndpointBalancer::Attempt attempt = balancer.Pick(/*avoid=*/{});
//   ... send to attempt.endpoint->address() ...
//   balancer.Finish(attempt, status.code(), /*cut_by_caller=*/false);
//
// Picking. Each attempt goes to an endpoint that is not ejected, is not known to be unreachable
// (the transport says so through SetReachable) and was not tried by the same call (`avoid`: a
// retry or a hedge goes elsewhere than the attempt that failed or is slow). Only when no endpoint
// qualifies are those rules dropped, in that order: an endpoint this call tried, then one that
// is unreachable, then one that is ejected (so a call always has somewhere to go, and the target
// as a whole decides the circuit breaker). Among the qualifying endpoints:
//   kPeakEwma      power of two choices on (in flight + 1) x peak-EWMA latency (Finagle's and
//                  Linkerd's balancer): a slow endpoint or one whose calls pile up loses to a
//                  fast one. The latency estimate jumps to a slower sample at once and decays to
//                  faster ones with time constant `decay`; an endpoint left idle is seen decaying
//                  at the same rate, so a slow one is tried again now and then and can earn its
//                  share back.
//   kLeastRequest  power of two choices on requests in flight (Envoy's least_request).
//   kRoundRobin    each in turn.
//
// Ejection (gRFC A50, Envoy's outlier detection). An attempt's result counts as a failure when
// its code is among `failure_codes` (an attempt cut short by its caller, e.g. cancelled as a
// losing hedge or by the caller's deadline, counts as neither). An endpoint is ejected
//   - at once, when its last `consecutive_failures` results all failed, and
//   - at the end of an interval, when at least `minimum_hosts` endpoints each had
//     `request_volume` results in it and its failure percentage reached `threshold`,
// as long as fewer than `max_ejection_percent` of the endpoints are ejected (at least one may
// always be). The k-th ejection in a row lasts k x base_ejection_time, at most
// max(base_ejection_time, max_ejection_time); each interval an endpoint spends in service takes
// one off k. An ejected endpoint is back in service once its time is over.
//
// Addresses change with name resolution (SetAddresses): an endpoint whose address stays keeps
// its state; one that is gone is dropped (attempts still on it finish harmlessly).
//
// Thread-safe: one lock per balancer, held only for arithmetic. Time comes from the
// environment's clock, the random choice from its random source; Sweep is called by whoever
// owns the balancer (EndpointSet, every interval, on the scheduler).
#ifndef HOSPITAL_SRC_RESILIENCE_ENDPOINT_BALANCER_H_
#define HOSPITAL_SRC_RESILIENCE_ENDPOINT_BALANCER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "base/status.h"
#include "base/sync.h"

namespace resilience {

enum class BalancingPolicy { kPeakEwma, kLeastRequest, kRoundRobin };

struct LoadBalancingConfig {
  BalancingPolicy policy = BalancingPolicy::kPeakEwma;
  // Peak-EWMA's time constant.
  absl::Duration decay = absl::Seconds(2);
  // How often a dns: target is resolved again (EndpointSet).
  absl::Duration re_resolution_interval = absl::Seconds(5);
};

struct OutlierDetectionConfig {
  bool enabled = true;
  absl::Duration interval = absl::Milliseconds(500);
  absl::Duration base_ejection_time = absl::Seconds(1);
  absl::Duration max_ejection_time = absl::Seconds(30);
  int max_ejection_percent = 50;
  // 0: no consecutive-failure ejection.
  int consecutive_failures = 5;
  // Failure-percentage ejection; threshold 0 turns it off.
  int failure_percentage_threshold = 50;
  int failure_percentage_minimum_hosts = 3;
  int failure_percentage_request_volume = 10;
  base::StatusCodeSet failure_codes = {absl::StatusCode::kUnavailable,
                                       absl::StatusCode::kDeadlineExceeded,
                                       absl::StatusCode::kInternal, absl::StatusCode::kUnknown,
                                       absl::StatusCode::kResourceExhausted};
};

// One endpoint's state, as metrics and the admin service show it.
struct EndpointSnapshot {
  std::string address;
  bool ejected = false;
  absl::Time ejected_since;  // When ejected, if it is.
  absl::Time ejected_until;  // When it is back in service, if ejected.
  int times_ejected = 0;     // Ejections since it was added.
  bool reachable = true;     // As the transport last said.
  int in_flight = 0;
  absl::Duration latency;     // The peak-EWMA estimate (0 before the first result).
  std::int64_t attempts = 0;  // Attempts finished since it was added.
  std::int64_t failures = 0;  // Of those, failures.
};

class EndpointBalancer final {
 public:
  class Endpoint;
  // An attempt in flight on `endpoint` (null when the target has no endpoint at all).
  struct Attempt {
    std::shared_ptr<Endpoint> endpoint;
    absl::Time start;
  };

  EndpointBalancer(LoadBalancingConfig balancing, OutlierDetectionConfig outlier_detection,
                   base::Environment environment);
  ~EndpointBalancer();
  EndpointBalancer(const EndpointBalancer&) = delete;
  EndpointBalancer& operator=(const EndpointBalancer&) = delete;

  // The endpoints now: keeps the state of those that stay, adds and drops the others.
  void SetAddresses(const std::vector<std::string>& addresses);
  // The transport's view of an endpoint's connection (see the file comment); ignored if the
  // address is not an endpoint.
  void SetReachable(const std::string& address, bool reachable);

  // Picks the endpoint of the next attempt, avoiding those in `avoid` (this call's earlier
  // attempts) if it can, and counts the attempt in flight there. Never fails while there is an
  // endpoint.
  Attempt Pick(const std::vector<const Endpoint*>& avoid);
  // The attempt's result. `cut_by_caller`: the caller cancelled it (a losing hedge, say) or its
  // caller's deadline ended it, which says nothing of the endpoint's health; its duration, a
  // lower bound of the endpoint's latency, may only raise the estimate.
  void Finish(const Attempt& attempt, absl::StatusCode code, bool cut_by_caller);
  // Failure-percentage ejection, and the end of ejection times; every interval.
  void Sweep();

  std::vector<EndpointSnapshot> Snapshot() const;
  int size() const;
  const OutlierDetectionConfig& outlier_detection() const { return outlier_detection_; }
  const LoadBalancingConfig& balancing() const { return balancing_; }

 private:
  // Ejects `endpoint` at `now` if the cap allows.
  void MaybeEject(Endpoint& endpoint, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Back in service, where an ejection is over.
  void Readmit(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  double Cost(const Endpoint& endpoint, absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const LoadBalancingConfig balancing_;
  const OutlierDetectionConfig outlier_detection_;
  const base::Environment environment_;

  mutable base::Mutex mutex_;
  std::vector<std::shared_ptr<Endpoint>> endpoints_ ABSL_GUARDED_BY(mutex_);
  std::size_t next_round_robin_ ABSL_GUARDED_BY(mutex_) = 0;
};

// Public only so that Attempt can point at it; its members are the balancer's.
class EndpointBalancer::Endpoint {
 public:
  explicit Endpoint(std::string address) : address_(std::move(address)) {}
  const std::string& address() const { return address_; }

 private:
  friend class EndpointBalancer;
  const std::string address_;
  // Guarded by the balancer's mutex.
  bool ejected_ = false;
  absl::Time ejected_since_;
  absl::Time ejected_until_;
  int ejection_multiplier_ = 0;
  int times_ejected_ = 0;
  bool reachable_ = true;
  int in_flight_ = 0;
  double latency_seconds_ = 0;  // Peak EWMA.
  absl::Time latency_time_;     // When it was last updated.
  int consecutive_failures_ = 0;
  std::int64_t interval_successes_ = 0;
  std::int64_t interval_failures_ = 0;
  std::int64_t attempts_ = 0;
  std::int64_t failures_ = 0;
  bool removed_ = false;
};

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_ENDPOINT_BALANCER_H_
