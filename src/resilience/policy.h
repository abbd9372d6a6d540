// Resilience policy: the validated, compiled form of protos/resilience/v1/policy.proto.
//
//   absl::StatusOr<resilience::Policy> policy = resilience::LoadPolicyFile("policy.json");
//   if (!policy.ok()) { /* message names the field and the value; stop start-up */ }
//   const resilience::MethodPolicy& admit =
//       policy->ForTarget("morgue").ForMethod("/hospital.morgue.v1.MorgueService/AdmitDeceased");
//
// Parsing uses protobuf's JSON parser (unknown fields are errors); validation then checks every
// range and names the offending field by its JSON path, e.g.
//   targets["morgue"].methodConfig[0].retryPolicy.maxAttempts: must be 1 to 10, got 0
#ifndef HOSPITAL_SRC_RESILIENCE_POLICY_H_
#define HOSPITAL_SRC_RESILIENCE_POLICY_H_

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/status.h"
#include "resilience/adaptive_throttle.h"
#include "resilience/backoff.h"
#include "resilience/bulkhead.h"
#include "resilience/circuit_breaker.h"
#include "resilience/endpoint_balancer.h"
#include "resilience/retry_budget.h"
#include "resilience/v1/policy.pb.h"

namespace resilience {

// Timeout used when no method config sets one: every call has a deadline.
inline constexpr absl::Duration kDefaultTimeout = absl::Seconds(30);

// Hedging of one method (see HedgingPolicy in policy.proto); off unless max_attempts > 1.
struct HedgingConfig {
  static constexpr int kMaxAttempts = 5;
  int max_attempts = 1;
  absl::Duration delay = absl::ZeroDuration();
  base::StatusCodeSet non_fatal_codes;
  bool enabled() const { return max_attempts > 1; }
};

struct MethodPolicy {
  absl::Duration timeout = kDefaultTimeout;
  absl::Duration per_attempt_timeout = absl::InfiniteDuration();
  absl::Duration deadline_margin = absl::ZeroDuration();
  bool idempotent = true;
  int max_attempts = 1;
  BackoffConfig backoff;
  base::StatusCodeSet retryable_codes = {absl::StatusCode::kUnavailable};
  HedgingConfig hedging;
};

class TargetPolicy {
 public:
  CircuitBreakerConfig breaker;
  RetryBudgetConfig budget;
  BulkheadConfig bulkhead;
  AdaptiveThrottleConfig throttle;
  LoadBalancingConfig balancing;
  OutlierDetectionConfig outlier_detection;

  // The policy of `full_method` ("/package.Service/Method"), by gRPC's service config rules:
  // an entry naming service and method, else one naming the service, else the default entry,
  // else built-in defaults.
  const MethodPolicy& ForMethod(std::string_view full_method) const;

  // Adds a method entry; `service` empty means the target's default (then `method` must be too).
  void SetMethodPolicy(std::string service, std::string method, MethodPolicy policy);

  // The longest timeout any method of the target can have (the built-in default's included
  // when no entry covers every method).
  absl::Duration LongestTimeout() const;

 private:
  // Keyed by "service/method", "service/" or "/".
  std::map<std::string, MethodPolicy, std::less<>> methods_;
  MethodPolicy builtin_;
};

class Policy {
 public:
  // The target's own policy, or the default target policy.
  const TargetPolicy& ForTarget(std::string_view target) const;

  std::map<std::string, TargetPolicy, std::less<>> targets;
  TargetPolicy default_target;
};

// Validates and compiles a parsed policy. INVALID_ARGUMENT names the field and the value.
absl::StatusOr<Policy> CompilePolicy(const v1::ResiliencePolicy& proto);

// Parses JSON (protobuf's JSON mapping of ResiliencePolicy) and compiles it.
absl::StatusOr<Policy> ParsePolicyJson(std::string_view json);

// Reads and parses a policy file. NOT_FOUND if it cannot be read; INVALID_ARGUMENT (with the
// file name) if it is not a valid policy.
absl::StatusOr<Policy> LoadPolicyFile(const std::string& path);

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_POLICY_H_
