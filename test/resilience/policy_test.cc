#include "resilience/policy.h"

#include <fstream>
#include <sstream>

#include <catch2/catch.hpp>

namespace resilience {
namespace {

using absl::StatusCode;

std::string ErrorOf(std::string_view json) {
  absl::StatusOr<Policy> policy = ParsePolicyJson(json);
  REQUIRE_FALSE(policy.ok());
  CHECK(policy.status().code() == absl::StatusCode::kInvalidArgument);
  return std::string(policy.status().message());
}

TEST_CASE("the checked-in example policy parses", "[policy]") {
  absl::StatusOr<Policy> policy = LoadPolicyFile(HOSPITAL_EXAMPLE_POLICY);
  INFO(policy.status().ToString());
  REQUIRE(policy.ok());
  const TargetPolicy& morgue = policy->ForTarget("morgue");
  CHECK(morgue.breaker.enabled);
  CHECK(morgue.budget.enabled);
  CHECK(morgue.bulkhead.max_concurrent > 0);
}

TEST_CASE("the fault benchmark's policies parse, hedging and throttling where they should",
          "[policy]") {
  for (const char* name : {"naive", "retries", "resilient", "hedged", "throttled"}) {
    absl::StatusOr<Policy> policy =
        LoadPolicyFile(std::string(HOSPITAL_BENCH_POLICIES) + "/" + name + ".json");
    INFO(name << ": " << policy.status().ToString());
    REQUIRE(policy.ok());
    const TargetPolicy& morgue = policy->ForTarget("morgue");
    CHECK(morgue.ForMethod("/hospital.morgue.v1.MorgueService/AdmitDeceased").hedging.enabled() ==
          (std::string(name) == "hedged"));
    CHECK_FALSE(
        morgue.ForMethod("/hospital.morgue.v1.MorgueService/CancelAdmission").hedging.enabled());
    CHECK(morgue.throttle.enabled == (std::string(name) == "throttled"));
  }
}

TEST_CASE("an empty policy gives the built-in defaults", "[policy]") {
  absl::StatusOr<Policy> policy = ParsePolicyJson("{}");
  REQUIRE(policy.ok());
  const TargetPolicy& target = policy->ForTarget("anything");
  CHECK_FALSE(target.breaker.enabled);
  CHECK_FALSE(target.budget.enabled);
  CHECK(target.bulkhead.max_concurrent == 0);
  const MethodPolicy& method = target.ForMethod("/a.B/C");
  CHECK(method.timeout == kDefaultTimeout);
  CHECK(method.max_attempts == 1);
  CHECK(method.idempotent);
}

TEST_CASE("method configs match as in gRPC's service config", "[policy]") {
  absl::StatusOr<Policy> policy = ParsePolicyJson(R"({
    "targets": {"morgue": {"methodConfig": [
      {"name": [{}], "timeout": "1s"},
      {"name": [{"service": "m.v1.Morgue"}], "timeout": "2s"},
      {"name": [{"service": "m.v1.Morgue", "method": "Admit"},
                {"service": "m.v1.Morgue", "method": "Release"}], "timeout": "3s",
       "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s",
                       "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE", "ABORTED"]}}
    ]}}})");
  INFO(policy.status().ToString());
  REQUIRE(policy.ok());
  const TargetPolicy& morgue = policy->ForTarget("morgue");
  CHECK(morgue.ForMethod("/m.v1.Morgue/Admit").timeout == absl::Seconds(3));
  CHECK(morgue.ForMethod("/m.v1.Morgue/Release").timeout == absl::Seconds(3));
  CHECK(morgue.ForMethod("/m.v1.Morgue/Get").timeout == absl::Seconds(2));
  CHECK(morgue.ForMethod("/other.Service/Get").timeout == absl::Seconds(1));
  const MethodPolicy& admit = morgue.ForMethod("/m.v1.Morgue/Admit");
  CHECK(admit.max_attempts == 3);
  CHECK(admit.retryable_codes.Contains(absl::StatusCode::kAborted));
  CHECK_FALSE(admit.retryable_codes.Contains(absl::StatusCode::kInternal));
  // A target without an entry gets the default target.
  CHECK(policy->ForTarget("appointments").ForMethod("/m.v1.Morgue/Admit").timeout ==
        kDefaultTimeout);
}

TEST_CASE("invalid policies name the field and the value", "[policy]") {
  CHECK_THAT(ErrorOf(R"({"targets": {"morgue": {"methodConfig": [
                 {"retryPolicy": {"maxAttempts": 0}}]}}})"),
             Catch::Contains("targets[\"morgue\"].methodConfig[0].retryPolicy.maxAttempts") &&
                 Catch::Contains("got 0"));
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"methodConfig": [{"timeout": "-1s"}]}})"),
             Catch::Contains("defaultTarget.methodConfig[0].timeout") && Catch::Contains("-1s"));
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"methodConfig": [{"retryPolicy": {"maxAttempts": 3,
                 "initialBackoff": "1s", "maxBackoff": "0.5s"}}]}})"),
             Catch::Contains("retryPolicy.maxBackoff") && Catch::Contains("500ms"));
  CHECK_THAT(
      ErrorOf(R"({"defaultTarget": {"methodConfig": [{"retryPolicy": {"maxAttempts": 3}}]}})"),
      Catch::Contains("retryPolicy.initialBackoff") && Catch::Contains("required"));
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"methodConfig": [{"retryPolicy": {"maxAttempts": 2,
                 "initialBackoff": "1s", "retryableStatusCodes": ["UNAVAILABEL"]}}]}})"),
             Catch::Contains("retryableStatusCodes[0]") && Catch::Contains("UNAVAILABEL"));
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"circuitBreaker": {"failureRateThreshold": 150}}})"),
             Catch::Contains("defaultTarget.circuitBreaker.failureRateThreshold") &&
                 Catch::Contains("150"));
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"circuitBreaker": {"waitJitter": 1.5}}})"),
             Catch::Contains("circuitBreaker.waitJitter") && Catch::Contains("1.5"));
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"circuitBreaker": {"failureStatusCodes": ["OK"]}}})"),
             Catch::Contains("failureStatusCodes[0]"));
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"retryBudget": {"ratio": 2, "maxTokens": 10}}})"),
             Catch::Contains("defaultTarget.retryBudget.ratio") && Catch::Contains("2"));
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"retryBudget": {"ratio": 0.1}}})"),
             Catch::Contains("retryBudget.maxTokens") && Catch::Contains("got 0"));
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"bulkhead": {"maxConcurrentCalls": 0}}})"),
             Catch::Contains("defaultTarget.bulkhead.maxConcurrentCalls"));
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"methodConfig": [{"name": [{"method": "Get"}]}]}})"),
             Catch::Contains("methodConfig[0].name[0].method") && Catch::Contains("Get"));
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"methodConfig": [{"timeout": "1s"}, {"name": [{}]}]}})"),
             Catch::Contains("methodConfig[1].name[0]") && Catch::Contains("duplicate"));
}

TEST_CASE("settings that could never take effect are refused, naming the field", "[policy]") {
  // A budget that never refills would end retries for the life of the process.
  CHECK_THAT(
      ErrorOf(R"({"defaultTarget": {"retryBudget": {"ratio": 0, "maxTokens": 10}}})"),
      Catch::Contains("defaultTarget.retryBudget.ratio") && Catch::Contains("never refills"));
  // A growing open wait capped at its own starting value.
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"circuitBreaker": {"waitDurationInOpenState": "1s",
                 "waitDurationMultiplier": 2}}})"),
             Catch::Contains("circuitBreaker.waitDurationMultiplier") &&
                 Catch::Contains("maxWaitDurationInOpenState"));
  // A slow-call threshold no attempt can reach: every method times out before it.
  CHECK_THAT(ErrorOf(R"({"targets": {"morgue": {
                 "circuitBreaker": {"slowCallDurationThreshold": "3s"},
                 "methodConfig": [{"timeout": "1s"},
                                  {"name": [{"service": "m.v1.Morgue"}], "timeout": "2s"}]}}})"),
             Catch::Contains("targets[\"morgue\"].circuitBreaker.slowCallDurationThreshold") &&
                 Catch::Contains("3s") && Catch::Contains("2s"));
  // Without a default entry a method may have the built-in 30 s timeout.
  CHECK(ParsePolicyJson(R"({"targets": {"morgue": {
            "circuitBreaker": {"slowCallDurationThreshold": "3s"},
            "methodConfig": [{"name": [{"service": "m.v1.Morgue"}], "timeout": "2s"}]}}})")
            .ok());
  // A maxBackoff that no delay can reach.
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"methodConfig": [{"retryPolicy": {"maxAttempts": 3,
                 "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 1}}]}})"),
             Catch::Contains("retryPolicy.maxBackoff") && Catch::Contains("never reached"));
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"methodConfig": [{"retryPolicy": {"maxAttempts": 1,
                 "maxBackoff": "1s"}}]}})"),
             Catch::Contains("retryPolicy.maxBackoff") && Catch::Contains("maxAttempts 1"));
}

TEST_CASE("half-open waits by default as long as the longest timeout or the open wait",
          "[policy][half-open]") {
  absl::StatusOr<Policy> policy = ParsePolicyJson(R"({"targets": {
      "morgue": {"circuitBreaker": {"waitDurationInOpenState": "2s"},
                 "methodConfig": [{"timeout": "1s"},
                                  {"name": [{"service": "m.v1.Morgue"}], "timeout": "4s"}]},
      "short": {"circuitBreaker": {"waitDurationInOpenState": "2s"},
                "methodConfig": [{"timeout": "1s"}]},
      "set": {"circuitBreaker": {"maxWaitDurationInHalfOpenState": "0.5s"},
              "methodConfig": [{"timeout": "1s"}]}}})");
  INFO(policy.status().ToString());
  REQUIRE(policy.ok());
  CHECK(policy->ForTarget("morgue").breaker.max_wait_in_half_open == absl::Seconds(4));
  CHECK(policy->ForTarget("short").breaker.max_wait_in_half_open == absl::Seconds(2));
  CHECK(policy->ForTarget("set").breaker.max_wait_in_half_open == absl::Milliseconds(500));
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"circuitBreaker": {
                 "maxWaitDurationInHalfOpenState": "0s"}}})"),
             Catch::Contains("circuitBreaker.maxWaitDurationInHalfOpenState"));
}

TEST_CASE("adaptive throttling is configured per target, and checked", "[policy][throttle]") {
  absl::StatusOr<Policy> policy = ParsePolicyJson(R"({"targets": {"morgue": {
      "adaptiveThrottling": {"k": 1.5, "window": "30s",
                             "rejectionStatusCodes": ["RESOURCE_EXHAUSTED"]}}}})");
  INFO(policy.status().ToString());
  REQUIRE(policy.ok());
  const AdaptiveThrottleConfig& throttle = policy->ForTarget("morgue").throttle;
  CHECK(throttle.enabled);
  CHECK(throttle.k == 1.5);
  CHECK(throttle.window_seconds == 30);
  CHECK(throttle.rejection_codes.Contains(StatusCode::kResourceExhausted));
  CHECK_FALSE(throttle.rejection_codes.Contains(StatusCode::kUnavailable));
  CHECK_FALSE(policy->ForTarget("other").throttle.enabled);
  const AdaptiveThrottleConfig defaults =
      ParsePolicyJson(R"({"defaultTarget": {"adaptiveThrottling": {}}})")->default_target.throttle;
  CHECK(defaults.enabled);
  CHECK(defaults.k == 2.0);
  CHECK(defaults.window_seconds == 120);
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"adaptiveThrottling": {"k": 0.5}}})"),
             Catch::Contains("defaultTarget.adaptiveThrottling.k") && Catch::Contains("0.5"));
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"adaptiveThrottling": {"window": "1.5s"}}})"),
             Catch::Contains("adaptiveThrottling.window") && Catch::Contains("1.5s"));
}

TEST_CASE("hedging is checked, and only for idempotent methods without a retry policy",
          "[policy][hedging]") {
  absl::StatusOr<Policy> policy = ParsePolicyJson(R"({"defaultTarget": {"methodConfig": [{
      "timeout": "1s", "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0.05s",
                                         "nonFatalStatusCodes": ["UNAVAILABLE"]}}]}})");
  REQUIRE(policy.ok());
  const HedgingConfig& hedging = policy->default_target.ForMethod("/a.B/C").hedging;
  CHECK(hedging.enabled());
  CHECK(hedging.max_attempts == 3);
  CHECK(hedging.delay == absl::Milliseconds(50));
  CHECK(hedging.non_fatal_codes.Contains(absl::StatusCode::kUnavailable));
  CHECK_FALSE(hedging.non_fatal_codes.Contains(absl::StatusCode::kInternal));
  CHECK_FALSE(ParsePolicyJson("{}")->default_target.ForMethod("/a.B/C").hedging.enabled());

  const auto error_of = [](const std::string& method_config) {
    return std::string(
        ParsePolicyJson(R"({"defaultTarget": {"methodConfig": [)" + method_config + "]}}")
            .status()
            .message());
  };
  CHECK_THAT(error_of(R"({"hedgingPolicy": {"maxAttempts": 1}})"),
             Catch::Contains("hedgingPolicy.maxAttempts: must be 2 to 5, got 1"));
  CHECK_THAT(error_of(R"({"hedgingPolicy": {"maxAttempts": 6}})"),
             Catch::Contains("hedgingPolicy.maxAttempts: must be 2 to 5, got 6"));
  CHECK_THAT(error_of(R"({"hedgingPolicy": {"maxAttempts": 2, "hedgingDelay": "-0.1s"}})"),
             Catch::Contains("hedgingPolicy.hedgingDelay: must be non-negative"));
  CHECK_THAT(error_of(R"({"timeout": "1s",
                          "hedgingPolicy": {"maxAttempts": 2, "hedgingDelay": "1s"}})"),
             Catch::Contains("hedgingPolicy.hedgingDelay") && Catch::Contains("never reached"));
  CHECK_THAT(error_of(R"({"hedgingPolicy": {"maxAttempts": 2, "nonFatalStatusCodes": ["NOPE"]}})"),
             Catch::Contains("hedgingPolicy.nonFatalStatusCodes[0]: unknown status code"));
  CHECK_THAT(error_of(R"({"hedgingPolicy": {"maxAttempts": 2},
                          "retryPolicy": {"maxAttempts": 2, "initialBackoff": "0.1s"}})"),
             Catch::Contains("hedgingPolicy: cannot be set together with retryPolicy"));
  CHECK_THAT(error_of(R"({"idempotent": false, "hedgingPolicy": {"maxAttempts": 2}})"),
             Catch::Contains("hedgingPolicy: needs an idempotent method"));
}

TEST_CASE("endpoint balancing and outlier detection are configured per target, and checked",
          "[policy][endpoints]") {
  absl::StatusOr<Policy> policy = ParsePolicyJson(R"({"targets": {"morgue": {
      "loadBalancing": {"policy": "LEAST_REQUEST", "decay": "1s", "reResolutionInterval": "2s"},
      "outlierDetection": {"interval": "0.2s", "baseEjectionTime": "2s", "maxEjectionTime": "10s",
                           "maxEjectionPercent": 34, "consecutiveFailures": 3,
                           "failurePercentageEjection": {"threshold": 60, "minimumHosts": 2,
                                                         "requestVolume": 5},
                           "failureStatusCodes": ["UNAVAILABLE"]}},
      "appointments": {"outlierDetection": {}}}})");
  INFO(policy.status().ToString());
  REQUIRE(policy.ok());
  const TargetPolicy& morgue = policy->ForTarget("morgue");
  CHECK(morgue.balancing.policy == BalancingPolicy::kLeastRequest);
  CHECK(morgue.balancing.decay == absl::Seconds(1));
  CHECK(morgue.balancing.re_resolution_interval == absl::Seconds(2));
  const OutlierDetectionConfig& outlier = morgue.outlier_detection;
  CHECK(outlier.enabled);
  CHECK(outlier.interval == absl::Milliseconds(200));
  CHECK(outlier.base_ejection_time == absl::Seconds(2));
  CHECK(outlier.max_ejection_time == absl::Seconds(10));
  CHECK(outlier.max_ejection_percent == 34);
  CHECK(outlier.consecutive_failures == 3);
  CHECK(outlier.failure_percentage_threshold == 60);
  CHECK(outlier.failure_percentage_minimum_hosts == 2);
  CHECK(outlier.failure_percentage_request_volume == 5);
  CHECK(outlier.failure_codes == base::StatusCodeSet{StatusCode::kUnavailable});
  // An empty message: ejection on with A50's and Envoy's shape of defaults; no percentage rule.
  const OutlierDetectionConfig& defaults = policy->ForTarget("appointments").outlier_detection;
  CHECK(defaults.enabled);
  CHECK(defaults.consecutive_failures == 5);
  CHECK(defaults.failure_percentage_threshold == 0);
  CHECK(policy->ForTarget("appointments").balancing.policy == BalancingPolicy::kPeakEwma);
  // Absent: no ejection.
  CHECK_FALSE(policy->ForTarget("other").outlier_detection.enabled);

  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"loadBalancing": {"policy": "RANDOM"}}})"),
             Catch::StartsWith("defaultTarget.loadBalancing.policy: must be PEAK_EWMA"));
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"loadBalancing": {"decay": "0s"}}})"),
             Catch::StartsWith("defaultTarget.loadBalancing.decay: must be 10ms to 1m"));
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"outlierDetection": {"maxEjectionPercent": 101}}})"),
             Catch::StartsWith("defaultTarget.outlierDetection.maxEjectionPercent: must be 1 to "
                               "100, got 101"));
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"outlierDetection": {"baseEjectionTime": "5s",
                                                                "maxEjectionTime": "1s"}}})"),
             Catch::StartsWith("defaultTarget.outlierDetection.maxEjectionTime: must be 5s"));
  CHECK_THAT(
      ErrorOf(R"({"defaultTarget": {"outlierDetection":
                  {"failurePercentageEjection": {"threshold": 120}}}})"),
      Catch::StartsWith(
          "defaultTarget.outlierDetection.failurePercentageEjection.threshold: must be 1 to 100"));
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"outlierDetection":
                         {"failureStatusCodes": ["SLOW"]}}})"),
             Catch::StartsWith("defaultTarget.outlierDetection.failureStatusCodes[0]: unknown"));
}

TEST_CASE("the JSON parser rejects unknown fields and malformed values", "[policy]") {
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"circuitBraker": {}}})"),
             Catch::Contains("circuitBraker"));
  CHECK_THAT(ErrorOf(R"({"defaultTarget": {"methodConfig": [{"timeout": "soon"}]}})"),
             Catch::Contains("timeout") || Catch::Contains("soon") || Catch::Contains("uration"));
  CHECK_THAT(ErrorOf("{not json"), Catch::Contains("not a valid resilience policy"));
}

TEST_CASE("a missing policy file is NOT_FOUND naming the path", "[policy]") {
  absl::StatusOr<Policy> policy = LoadPolicyFile("/nonexistent/policy.json");
  REQUIRE_FALSE(policy.ok());
  CHECK(policy.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(policy.status().message()), Catch::Contains("/nonexistent/policy.json"));
}

}  // namespace
}  // namespace resilience
