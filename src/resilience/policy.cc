#include "resilience/policy.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "base/method_name.h"
#include "base/proto_duration.h"

namespace resilience {
namespace {

std::string FormatDuration(const google::protobuf::Duration& duration) {
  return absl::FormatDuration(base::FromProtoDuration(duration));
}

absl::Status Invalid(absl::string_view path, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", problem));
}

// Reads a duration field that must be positive (or, with allow_zero, non-negative).
absl::Status ReadDuration(const google::protobuf::Duration& field, absl::string_view path,
                          bool allow_zero, absl::Duration& out) {
  const absl::Duration value = base::FromProtoDuration(field);
  if (value < absl::ZeroDuration() || (!allow_zero && value == absl::ZeroDuration())) {
    return Invalid(path, absl::StrCat("must be ", allow_zero ? "non-negative" : "positive",
                                      ", got \"", FormatDuration(field), "\""));
  }
  out = value;
  return absl::OkStatus();
}

absl::Status ReadCodes(const google::protobuf::RepeatedPtrField<std::string>& names,
                       absl::string_view path, base::StatusCodeSet& out) {
  base::StatusCodeSet codes;
  for (int i = 0; i < names.size(); ++i) {
    const std::optional<absl::StatusCode> code = base::StatusCodeFromName(names[i]);
    if (!code) {
      return Invalid(absl::StrCat(path, "[", i, "]"),
                     absl::StrCat("unknown status code \"", names[i],
                                  "\" (use names such as \"UNAVAILABLE\")"));
    }
    if (*code == absl::StatusCode::kOk) {
      return Invalid(absl::StrCat(path, "[", i, "]"), "\"OK\" is not an error code");
    }
    codes.Add(*code);
  }
  out = codes;
  return absl::OkStatus();
}

absl::Status CompileRetryPolicy(const v1::RetryPolicy& proto, absl::string_view path,
                                MethodPolicy& out) {
  if (proto.max_attempts() < 1 || proto.max_attempts() > 10) {
    return Invalid(absl::StrCat(path, ".maxAttempts"),
                   absl::StrCat("must be 1 to 10, got ", proto.max_attempts()));
  }
  out.max_attempts = static_cast<int>(proto.max_attempts());
  if (proto.max_attempts() == 1 && !proto.has_initial_backoff() && proto.has_max_backoff()) {
    return Invalid(absl::StrCat(path, ".maxBackoff"),
                   "has no effect with maxAttempts 1 (no retry is ever made)");
  }
  if (proto.max_attempts() > 1 || proto.has_initial_backoff()) {
    if (!proto.has_initial_backoff()) {
      return Invalid(absl::StrCat(path, ".initialBackoff"), "is required when maxAttempts > 1");
    }
    if (auto s = ReadDuration(proto.initial_backoff(), absl::StrCat(path, ".initialBackoff"), false,
                              out.backoff.initial_backoff);
        !s.ok()) {
      return s;
    }
    out.backoff.max_backoff = out.backoff.initial_backoff;
    if (proto.has_max_backoff()) {
      if (auto s = ReadDuration(proto.max_backoff(), absl::StrCat(path, ".maxBackoff"), false,
                                out.backoff.max_backoff);
          !s.ok()) {
        return s;
      }
      if (out.backoff.max_backoff < out.backoff.initial_backoff) {
        return Invalid(absl::StrCat(path, ".maxBackoff"),
                       absl::StrCat("must be at least initialBackoff, got \"",
                                    FormatDuration(proto.max_backoff()), "\""));
      }
    }
    out.backoff.multiplier = proto.backoff_multiplier() == 0 ? 2.0 : proto.backoff_multiplier();
    if (!(out.backoff.multiplier >= 1.0 && out.backoff.multiplier <= 100.0)) {
      return Invalid(absl::StrCat(path, ".backoffMultiplier"),
                     absl::StrCat("must be 1 to 100, got ", proto.backoff_multiplier()));
    }
    if (out.backoff.multiplier == 1.0 && out.backoff.max_backoff > out.backoff.initial_backoff) {
      return Invalid(absl::StrCat(path, ".maxBackoff"),
                     absl::StrCat("\"", FormatDuration(proto.max_backoff()),
                                  "\" is never reached: with backoffMultiplier 1 every delay is "
                                  "drawn below initialBackoff"));
    }
  }
  if (proto.retryable_status_codes_size() > 0) {
    return ReadCodes(proto.retryable_status_codes(), absl::StrCat(path, ".retryableStatusCodes"),
                     out.retryable_codes);
  }
  return absl::OkStatus();
}

absl::Status CompileHedgingPolicy(const v1::HedgingPolicy& proto, absl::string_view path,
                                  MethodPolicy& out) {
  if (proto.max_attempts() < 2 ||
      proto.max_attempts() > static_cast<std::uint32_t>(HedgingConfig::kMaxAttempts)) {
    return Invalid(
        absl::StrCat(path, ".maxAttempts"),
        absl::StrCat("must be 2 to ", HedgingConfig::kMaxAttempts, ", got ", proto.max_attempts()));
  }
  out.hedging.max_attempts = static_cast<int>(proto.max_attempts());
  if (auto s = ReadDuration(proto.hedging_delay(), absl::StrCat(path, ".hedgingDelay"), true,
                            out.hedging.delay);
      !s.ok()) {
    return s;
  }
  if (out.hedging.delay >= out.timeout) {
    return Invalid(absl::StrCat(path, ".hedgingDelay"),
                   absl::StrCat("\"", FormatDuration(proto.hedging_delay()),
                                "\" is never reached: it must be shorter than the timeout (",
                                absl::FormatDuration(out.timeout), ")"));
  }
  if (proto.non_fatal_status_codes_size() > 0) {
    return ReadCodes(proto.non_fatal_status_codes(), absl::StrCat(path, ".nonFatalStatusCodes"),
                     out.hedging.non_fatal_codes);
  }
  return absl::OkStatus();
}

absl::Status CompileMethod(const v1::MethodConfig& proto, absl::string_view path,
                           MethodPolicy& out) {
  if (proto.has_timeout()) {
    if (auto s = ReadDuration(proto.timeout(), absl::StrCat(path, ".timeout"), false, out.timeout);
        !s.ok()) {
      return s;
    }
  }
  if (proto.has_per_attempt_timeout()) {
    if (auto s = ReadDuration(proto.per_attempt_timeout(), absl::StrCat(path, ".perAttemptTimeout"),
                              false, out.per_attempt_timeout);
        !s.ok()) {
      return s;
    }
  }
  if (proto.has_deadline_margin()) {
    if (auto s = ReadDuration(proto.deadline_margin(), absl::StrCat(path, ".deadlineMargin"), true,
                              out.deadline_margin);
        !s.ok()) {
      return s;
    }
  }
  if (proto.has_idempotent()) out.idempotent = proto.idempotent();
  if (proto.has_hedging_policy()) {
    const std::string hedging_path = absl::StrCat(path, ".hedgingPolicy");
    if (proto.has_retry_policy()) {
      return Invalid(hedging_path, "cannot be set together with retryPolicy (gRFC A6)");
    }
    if (!out.idempotent) {
      return Invalid(hedging_path,
                     "needs an idempotent method: every hedge may reach the server, and the "
                     "entry sets idempotent false");
    }
    return CompileHedgingPolicy(proto.hedging_policy(), hedging_path, out);
  }
  if (proto.has_retry_policy()) {
    return CompileRetryPolicy(proto.retry_policy(), absl::StrCat(path, ".retryPolicy"), out);
  }
  return absl::OkStatus();
}

absl::Status CheckPercent(double value, absl::string_view path, absl::string_view field) {
  if (!(value > 0.0 && value <= 100.0)) {
    return Invalid(absl::StrCat(path, ".", field),
                   absl::StrCat("must be in (0, 100], got ", value));
  }
  return absl::OkStatus();
}

// The window the failure and slow-call rates are computed over, and their thresholds.
absl::Status CompileBreakerWindow(const v1::CircuitBreaker& proto, absl::string_view path,
                                  CircuitBreakerConfig& out) {
  out.window_type = proto.sliding_window_type() == v1::CircuitBreaker::TIME_BASED
                        ? CircuitBreakerConfig::WindowType::kTimeBased
                        : CircuitBreakerConfig::WindowType::kCountBased;
  if (proto.sliding_window_size() != 0) out.window_size = proto.sliding_window_size();
  if (out.window_size > 10000) {
    return Invalid(absl::StrCat(path, ".slidingWindowSize"),
                   absl::StrCat("must be 1 to 10000, got ", proto.sliding_window_size()));
  }
  if (proto.minimum_number_of_calls() != 0) out.minimum_calls = proto.minimum_number_of_calls();
  if (out.window_type == CircuitBreakerConfig::WindowType::kCountBased) {
    out.minimum_calls = std::min(out.minimum_calls, out.window_size);
  }
  if (proto.failure_rate_threshold() != 0)
    out.failure_rate_threshold = proto.failure_rate_threshold();
  if (auto s = CheckPercent(out.failure_rate_threshold, path, "failureRateThreshold"); !s.ok()) {
    return s;
  }
  if (proto.slow_call_rate_threshold() != 0) {
    out.slow_call_rate_threshold = proto.slow_call_rate_threshold();
  }
  if (auto s = CheckPercent(out.slow_call_rate_threshold, path, "slowCallRateThreshold"); !s.ok()) {
    return s;
  }
  if (proto.has_slow_call_duration_threshold()) {
    return ReadDuration(proto.slow_call_duration_threshold(),
                        absl::StrCat(path, ".slowCallDurationThreshold"), false,
                        out.slow_call_duration);
  }
  return absl::OkStatus();
}

// How long the breaker stays open, and how that grows while the target keeps failing.
absl::Status CompileBreakerOpenWait(const v1::CircuitBreaker& proto, absl::string_view path,
                                    CircuitBreakerConfig& out) {
  if (proto.has_wait_duration_in_open_state()) {
    if (auto s =
            ReadDuration(proto.wait_duration_in_open_state(),
                         absl::StrCat(path, ".waitDurationInOpenState"), false, out.wait_in_open);
        !s.ok()) {
      return s;
    }
  }
  out.wait_multiplier =
      proto.wait_duration_multiplier() == 0 ? 1.0 : proto.wait_duration_multiplier();
  if (!(out.wait_multiplier >= 1.0 && out.wait_multiplier <= 100.0)) {
    return Invalid(absl::StrCat(path, ".waitDurationMultiplier"),
                   absl::StrCat("must be 1 to 100, got ", proto.wait_duration_multiplier()));
  }
  out.max_wait_in_open = out.wait_in_open;
  if (out.wait_multiplier > 1.0 && !proto.has_max_wait_duration_in_open_state()) {
    return Invalid(absl::StrCat(path, ".waitDurationMultiplier"),
                   absl::StrCat(proto.wait_duration_multiplier(),
                                " has no effect without a maxWaitDurationInOpenState above "
                                "waitDurationInOpenState (the wait is capped at it)"));
  }
  if (proto.has_max_wait_duration_in_open_state()) {
    if (auto s = ReadDuration(proto.max_wait_duration_in_open_state(),
                              absl::StrCat(path, ".maxWaitDurationInOpenState"), false,
                              out.max_wait_in_open);
        !s.ok()) {
      return s;
    }
    if (out.max_wait_in_open < out.wait_in_open) {
      return Invalid(absl::StrCat(path, ".maxWaitDurationInOpenState"),
                     absl::StrCat("must be at least waitDurationInOpenState, got \"",
                                  FormatDuration(proto.max_wait_duration_in_open_state()), "\""));
    }
  }
  out.wait_jitter = proto.wait_jitter();
  if (!(out.wait_jitter >= 0.0 && out.wait_jitter < 1.0)) {
    return Invalid(absl::StrCat(path, ".waitJitter"),
                   absl::StrCat("must be in [0, 1), got ", proto.wait_jitter()));
  }
  return absl::OkStatus();
}

absl::Status CompileBreaker(const v1::CircuitBreaker& proto, absl::string_view path,
                            CircuitBreakerConfig& out) {
  out.enabled = true;
  if (auto s = CompileBreakerWindow(proto, path, out); !s.ok()) return s;
  if (auto s = CompileBreakerOpenWait(proto, path, out); !s.ok()) return s;
  // Half open: how many trial calls, and how long the breaker waits for their outcomes.
  if (proto.permitted_number_of_calls_in_half_open_state() != 0) {
    out.half_open_permitted_calls = proto.permitted_number_of_calls_in_half_open_state();
  }
  if (out.half_open_permitted_calls > 1000) {
    return Invalid(absl::StrCat(path, ".permittedNumberOfCallsInHalfOpenState"),
                   absl::StrCat("must be 1 to 1000, got ", out.half_open_permitted_calls));
  }
  if (proto.has_max_wait_duration_in_half_open_state()) {
    if (auto s = ReadDuration(proto.max_wait_duration_in_half_open_state(),
                              absl::StrCat(path, ".maxWaitDurationInHalfOpenState"), false,
                              out.max_wait_in_half_open);
        !s.ok()) {
      return s;
    }
  }
  if (proto.failure_status_codes_size() > 0) {
    return ReadCodes(proto.failure_status_codes(), absl::StrCat(path, ".failureStatusCodes"),
                     out.failure_codes);
  }
  return absl::OkStatus();
}

absl::Status CompileBudget(const v1::RetryBudget& proto, absl::string_view path,
                           RetryBudgetConfig& out) {
  out.enabled = true;
  if (!(proto.ratio() >= 0.0 && proto.ratio() <= 1.0)) {
    return Invalid(absl::StrCat(path, ".ratio"),
                   absl::StrCat("must be 0 to 1, got ", proto.ratio()));
  }
  if (!(proto.min_retries_per_second() >= 0.0 && proto.min_retries_per_second() <= 1e6)) {
    return Invalid(absl::StrCat(path, ".minRetriesPerSecond"),
                   absl::StrCat("must be 0 to 1e6, got ", proto.min_retries_per_second()));
  }
  if (!(proto.max_tokens() >= 1.0 && proto.max_tokens() <= 1e6)) {
    return Invalid(absl::StrCat(path, ".maxTokens"),
                   absl::StrCat("must be 1 to 1e6, got ", proto.max_tokens()));
  }
  if (proto.ratio() == 0.0 && proto.min_retries_per_second() == 0.0) {
    return Invalid(absl::StrCat(path, ".ratio"),
                   "0 together with minRetriesPerSecond 0 never refills the budget: after "
                   "maxTokens retries none would be allowed for the life of the process (set "
                   "either above 0, or leave retryBudget out for no budget)");
  }
  out.ratio = proto.ratio();
  out.min_retries_per_second = proto.min_retries_per_second();
  out.max_tokens = proto.max_tokens();
  return absl::OkStatus();
}

absl::Status CompileBulkhead(const v1::Bulkhead& proto, absl::string_view path,
                             BulkheadConfig& out) {
  if (proto.max_concurrent_calls() < 1 || proto.max_concurrent_calls() > 100000) {
    return Invalid(absl::StrCat(path, ".maxConcurrentCalls"),
                   absl::StrCat("must be 1 to 100000, got ", proto.max_concurrent_calls()));
  }
  out.max_concurrent = proto.max_concurrent_calls();
  if (proto.has_max_wait_duration()) {
    return ReadDuration(proto.max_wait_duration(), absl::StrCat(path, ".maxWaitDuration"), true,
                        out.max_wait);
  }
  return absl::OkStatus();
}

absl::Status CompileThrottle(const v1::AdaptiveThrottling& proto, absl::string_view path,
                             AdaptiveThrottleConfig& out) {
  out.enabled = true;
  if (proto.k() != 0) out.k = proto.k();
  if (!(out.k >= 1.0 && out.k <= 10.0)) {
    return Invalid(absl::StrCat(path, ".k"), absl::StrCat("must be 1 to 10, got ", proto.k()));
  }
  if (proto.has_window()) {
    const absl::Duration window = base::FromProtoDuration(proto.window());
    if (window < absl::Seconds(1) || window > absl::Seconds(3600) ||
        window != absl::Trunc(window, absl::Seconds(1))) {
      return Invalid(absl::StrCat(path, ".window"),
                     absl::StrCat("must be whole seconds from 1s to 3600s, got \"",
                                  FormatDuration(proto.window()), "\""));
    }
    out.window_seconds = static_cast<std::uint32_t>(absl::ToInt64Seconds(window));
  }
  if (proto.rejection_status_codes_size() > 0) {
    return ReadCodes(proto.rejection_status_codes(), absl::StrCat(path, ".rejectionStatusCodes"),
                     out.rejection_codes);
  }
  return absl::OkStatus();
}

// A duration field that may be absent (then `out` keeps its default), within [min, max].
absl::Status ReadBoundedDuration(bool present, const google::protobuf::Duration& proto,
                                 const std::string& path, absl::Duration min, absl::Duration max,
                                 absl::Duration& out) {
  if (!present) return absl::OkStatus();
  const absl::Duration value = base::FromProtoDuration(proto);
  if (value < min || value > max) {
    return Invalid(
        path, absl::StrCat("must be ", absl::FormatDuration(min), " to ", absl::FormatDuration(max),
                           ", got \"", FormatDuration(proto), "\""));
  }
  out = value;
  return absl::OkStatus();
}

absl::Status CompileBalancing(const v1::LoadBalancing& proto, absl::string_view path,
                              LoadBalancingConfig& out) {
  if (proto.policy() == "PEAK_EWMA" || proto.policy().empty()) {
    out.policy = BalancingPolicy::kPeakEwma;
  } else if (proto.policy() == "LEAST_REQUEST") {
    out.policy = BalancingPolicy::kLeastRequest;
  } else if (proto.policy() == "ROUND_ROBIN") {
    out.policy = BalancingPolicy::kRoundRobin;
  } else {
    return Invalid(absl::StrCat(path, ".policy"),
                   absl::StrCat("must be PEAK_EWMA, LEAST_REQUEST or ROUND_ROBIN, got \"",
                                proto.policy(), "\""));
  }
  RETURN_IF_ERROR(ReadBoundedDuration(proto.has_decay(), proto.decay(),
                                      absl::StrCat(path, ".decay"), absl::Milliseconds(10),
                                      absl::Seconds(60), out.decay));
  return ReadBoundedDuration(proto.has_re_resolution_interval(), proto.re_resolution_interval(),
                             absl::StrCat(path, ".reResolutionInterval"), absl::Seconds(1),
                             absl::Seconds(300), out.re_resolution_interval);
}

absl::Status CompileOutlierDetection(const v1::OutlierDetection& proto, absl::string_view path,
                                     OutlierDetectionConfig& out) {
  out.enabled = true;
  RETURN_IF_ERROR(ReadBoundedDuration(proto.has_interval(), proto.interval(),
                                      absl::StrCat(path, ".interval"), absl::Milliseconds(10),
                                      absl::Seconds(60), out.interval));
  RETURN_IF_ERROR(ReadBoundedDuration(proto.has_base_ejection_time(), proto.base_ejection_time(),
                                      absl::StrCat(path, ".baseEjectionTime"),
                                      absl::Milliseconds(10), absl::Seconds(3600),
                                      out.base_ejection_time));
  RETURN_IF_ERROR(ReadBoundedDuration(proto.has_max_ejection_time(), proto.max_ejection_time(),
                                      absl::StrCat(path, ".maxEjectionTime"),
                                      out.base_ejection_time, absl::Seconds(3600),
                                      out.max_ejection_time));
  if (proto.max_ejection_percent() > 100) {
    return Invalid(absl::StrCat(path, ".maxEjectionPercent"),
                   absl::StrCat("must be 1 to 100, got ", proto.max_ejection_percent()));
  }
  if (proto.max_ejection_percent() != 0) {
    out.max_ejection_percent = static_cast<int>(proto.max_ejection_percent());
  }
  if (proto.consecutive_failures() > 1000) {
    return Invalid(absl::StrCat(path, ".consecutiveFailures"),
                   absl::StrCat("must be 1 to 1000, got ", proto.consecutive_failures()));
  }
  if (proto.consecutive_failures() != 0) {
    out.consecutive_failures = static_cast<int>(proto.consecutive_failures());
  }
  out.failure_percentage_threshold = 0;
  if (proto.has_failure_percentage_ejection()) {
    const v1::OutlierDetection::FailurePercentageEjection& ejection =
        proto.failure_percentage_ejection();
    const std::string ejection_path = absl::StrCat(path, ".failurePercentageEjection");
    if (ejection.threshold() > 100) {
      return Invalid(absl::StrCat(ejection_path, ".threshold"),
                     absl::StrCat("must be 1 to 100, got ", ejection.threshold()));
    }
    out.failure_percentage_threshold =
        ejection.threshold() == 0 ? 50 : static_cast<int>(ejection.threshold());
    if (ejection.minimum_hosts() > 1000 || ejection.request_volume() > 1000000) {
      return Invalid(ejection.minimum_hosts() > 1000
                         ? absl::StrCat(ejection_path, ".minimumHosts")
                         : absl::StrCat(ejection_path, ".requestVolume"),
                     "is out of range (minimumHosts at most 1000, requestVolume at most 1000000)");
    }
    if (ejection.minimum_hosts() != 0) {
      out.failure_percentage_minimum_hosts = static_cast<int>(ejection.minimum_hosts());
    }
    if (ejection.request_volume() != 0) {
      out.failure_percentage_request_volume = static_cast<int>(ejection.request_volume());
    }
  }
  if (proto.failure_status_codes_size() > 0) {
    return ReadCodes(proto.failure_status_codes(), absl::StrCat(path, ".failureStatusCodes"),
                     out.failure_codes);
  }
  return absl::OkStatus();
}

absl::Status CompileTarget(const v1::TargetPolicy& proto, absl::string_view path,
                           TargetPolicy& out) {
  if (proto.has_load_balancing()) {
    RETURN_IF_ERROR(CompileBalancing(proto.load_balancing(), absl::StrCat(path, ".loadBalancing"),
                                     out.balancing));
  }
  out.outlier_detection.enabled = false;
  if (proto.has_outlier_detection()) {
    RETURN_IF_ERROR(CompileOutlierDetection(
        proto.outlier_detection(), absl::StrCat(path, ".outlierDetection"), out.outlier_detection));
  }
  out.breaker.enabled = false;
  if (proto.has_circuit_breaker()) {
    if (auto s = CompileBreaker(proto.circuit_breaker(), absl::StrCat(path, ".circuitBreaker"),
                                out.breaker);
        !s.ok()) {
      return s;
    }
  }
  if (proto.has_retry_budget()) {
    if (auto s =
            CompileBudget(proto.retry_budget(), absl::StrCat(path, ".retryBudget"), out.budget);
        !s.ok()) {
      return s;
    }
  }
  if (proto.has_bulkhead()) {
    if (auto s = CompileBulkhead(proto.bulkhead(), absl::StrCat(path, ".bulkhead"), out.bulkhead);
        !s.ok()) {
      return s;
    }
  }
  if (proto.has_adaptive_throttling()) {
    if (auto s = CompileThrottle(proto.adaptive_throttling(),
                                 absl::StrCat(path, ".adaptiveThrottling"), out.throttle);
        !s.ok()) {
      return s;
    }
  }
  std::map<std::string, int> seen_names;
  for (int i = 0; i < proto.method_config_size(); ++i) {
    const v1::MethodConfig& entry = proto.method_config(i);
    const std::string entry_path = absl::StrCat(path, ".methodConfig[", i, "]");
    MethodPolicy policy;
    if (auto s = CompileMethod(entry, entry_path, policy); !s.ok()) return s;
    std::vector<std::pair<std::string, std::string>> names;
    for (const auto& name : entry.name()) names.emplace_back(name.service(), name.method());
    if (names.empty()) names.emplace_back("", "");
    for (std::size_t n = 0; n < names.size(); ++n) {
      const auto& [service, method] = names[n];
      const std::string name_path = absl::StrCat(entry_path, ".name[", n, "]");
      if (service.empty() && !method.empty()) {
        return Invalid(absl::StrCat(name_path, ".method"),
                       absl::StrCat("\"", method, "\" needs a service"));
      }
      const std::string key = absl::StrCat(service, "/", method);
      if (auto [it, inserted] = seen_names.emplace(key, i); !inserted) {
        return Invalid(name_path, absl::StrCat("duplicate name \"", key,
                                               "\", also in methodConfig[", it->second, "]"));
      }
      out.SetMethodPolicy(service, method, policy);
    }
  }
  const absl::Duration longest_timeout = out.LongestTimeout();
  if (proto.circuit_breaker().has_slow_call_duration_threshold() &&
      out.breaker.slow_call_duration > longest_timeout) {
    return Invalid(
        absl::StrCat(path, ".circuitBreaker.slowCallDurationThreshold"),
        absl::StrCat("\"", FormatDuration(proto.circuit_breaker().slow_call_duration_threshold()),
                     "\" can never be reached: no method of the target has a timeout above ",
                     absl::FormatDuration(longest_timeout)));
  }
  if (!proto.circuit_breaker().has_max_wait_duration_in_half_open_state()) {
    // A probe ends by its own deadline before then; only an outcome never reported is cut.
    out.breaker.max_wait_in_half_open = std::max(out.breaker.wait_in_open, longest_timeout);
  }
  return absl::OkStatus();
}

}  // namespace

const MethodPolicy& TargetPolicy::ForMethod(std::string_view full_method) const {
  if (const std::optional<base::MethodName> name = base::ParseMethodName(full_method)) {
    // Keys are "package.Service/Method", "package.Service/" and "/" (the target's default).
    const std::string service_key = std::string(name->service) + "/";
    if (auto it = methods_.find(service_key + std::string(name->method)); it != methods_.end()) {
      return it->second;
    }
    if (auto it = methods_.find(service_key); it != methods_.end()) return it->second;
  }
  if (auto it = methods_.find(std::string_view("/")); it != methods_.end()) return it->second;
  return builtin_;
}

void TargetPolicy::SetMethodPolicy(std::string service, std::string method, MethodPolicy policy) {
  methods_.insert_or_assign(absl::StrCat(service, "/", method), std::move(policy));
}

absl::Duration TargetPolicy::LongestTimeout() const {
  absl::Duration longest = methods_.count("/") != 0 ? absl::ZeroDuration() : builtin_.timeout;
  for (const auto& [key, policy] : methods_) longest = std::max(longest, policy.timeout);
  return longest;
}

const TargetPolicy& Policy::ForTarget(std::string_view target) const {
  if (auto it = targets.find(target); it != targets.end()) return it->second;
  return default_target;
}

absl::StatusOr<Policy> CompilePolicy(const v1::ResiliencePolicy& proto) {
  Policy policy;
  if (auto s = CompileTarget(proto.default_target(), "defaultTarget", policy.default_target);
      !s.ok()) {
    return s;
  }
  for (const auto& [name, target_proto] : proto.targets()) {
    const std::string path = absl::StrCat("targets[\"", name, "\"]");
    if (name.empty()) return Invalid(path, "target name must not be empty");
    TargetPolicy target;
    if (auto s = CompileTarget(target_proto, path, target); !s.ok()) return s;
    policy.targets.emplace(name, std::move(target));
  }
  return policy;
}

absl::StatusOr<Policy> ParsePolicyJson(std::string_view json) {
  v1::ResiliencePolicy proto;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto parsed = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &proto, options);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a valid resilience policy: ", parsed.message().as_string()));
  }
  return CompilePolicy(proto);
}

absl::StatusOr<Policy> LoadPolicyFile(const std::string& path) {
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot read policy file ", path));
  std::stringstream text;
  text << file.rdbuf();
  absl::StatusOr<Policy> policy = ParsePolicyJson(text.str());
  if (!policy.ok()) {
    return absl::Status(policy.status().code(),
                        absl::StrCat(path, ": ", policy.status().message()));
  }
  return policy;
}

}  // namespace resilience
