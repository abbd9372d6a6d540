// The guards of one downstream target (circuit breaker, retry budget, bulkhead) and of its
// methods (deadline and retry policy), with their metrics resolved once.
//
//   resilience::TargetRegistry targets(std::move(policy), env.environment(), prometheus_registry);
//   resilience::GuardedMethod& admit =
//       targets.GetTarget("morgue").Method("/hospital.morgue.v1.MorgueService/AdmitDeceased");
//   // ... then make calls with resilience::CallUnary (grpc_call.h) or a GuardedCall subclass.
//
// Targets and methods are created on first use and live as long as the registry; references to
// them stay valid. Everything here is thread-safe.
#ifndef HOSPITAL_SRC_RESILIENCE_TARGET_H_
#define HOSPITAL_SRC_RESILIENCE_TARGET_H_

#include <functional>

#include <prometheus/collectable.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "base/clock.h"
#include "base/sync.h"
#include "resilience/bulkhead.h"
#include "resilience/circuit_breaker.h"
#include "resilience/metrics.h"
#include "resilience/policy.h"
#include "resilience/retry_budget.h"

namespace resilience {

class Target;

// One method of a target: its policy, metrics and prebuilt error statuses.
class GuardedMethod final {
 public:
  GuardedMethod(Target& target, std::string full_name, const MethodPolicy& policy);

  Target& target() const { return target_; }
  const std::string& full_name() const { return full_name_; }
  const MethodPolicy& policy() const { return policy_; }
  // Recorded by the pipeline on every call; read by TargetRegistry::call_metrics().
  MethodMetrics& metrics() { return metrics_; }
  // DEADLINE_EXCEEDED for a call whose time was spent before an attempt could be sent.
  const absl::Status& deadline_spent_status() const { return deadline_spent_status_; }
  // RESOURCE_EXHAUSTED for a call the bulkhead turned away.
  const absl::Status& bulkhead_full_status() const { return bulkhead_full_status_; }

 private:
  Target& target_;
  const std::string full_name_;
  const MethodPolicy policy_;
  MethodMetrics metrics_;
  const absl::Status deadline_spent_status_;
  const absl::Status bulkhead_full_status_;
};

class Target final : private CircuitBreaker::Listener {
 public:
  Target(std::string name, const TargetPolicy& policy, base::Environment environment,
         Metrics& metrics);
  Target(const Target&) = delete;
  Target& operator=(const Target&) = delete;

  // The method named "/package.Service/Method", created on first use.
  GuardedMethod& Method(std::string_view full_name);
  // Every method created so far, sorted by name.
  std::vector<GuardedMethod*> methods();
  // Calls `listener` after every breaker transition, on the thread that caused it (for a move
  // to HALF_OPEN: the first probe's, before the probe is sent), with no lock of the target or
  // the breaker held. It must not block. Listeners are kept for the target's life.
  void AddStateListener(std::function<void(BreakerState from, BreakerState to)> listener);

  const std::string& name() const { return name_; }
  CircuitBreaker& breaker() { return breaker_; }
  RetryBudget& budget() { return budget_; }
  Bulkhead& bulkhead() { return bulkhead_; }
  base::Environment environment() const { return environment_; }
  const TargetMetrics& metrics() const { return target_metrics_; }

 private:
  void OnStateChange(BreakerState from, BreakerState to) override;

  const std::string name_;
  const TargetPolicy policy_;
  const base::Environment environment_;
  Metrics& metrics_;
  const TargetMetrics target_metrics_;
  CircuitBreaker breaker_;
  RetryBudget budget_;
  Bulkhead bulkhead_;

  base::Mutex mutex_;
  std::map<std::string, std::unique_ptr<GuardedMethod>, std::less<>> methods_
      ABSL_GUARDED_BY(mutex_);
  std::vector<std::function<void(BreakerState, BreakerState)>> state_listeners_
      ABSL_GUARDED_BY(mutex_);
};

// All targets of a process, created from one policy.
class TargetRegistry final {
 public:
  // `environment`'s members and `registry` must outlive this object. The breaker series go to
  // `registry`; register call_metrics() with the same exposer for the per-call series.
  TargetRegistry(Policy policy, base::Environment environment, prometheus::Registry& registry);
  ~TargetRegistry();
  TargetRegistry(const TargetRegistry&) = delete;
  TargetRegistry& operator=(const TargetRegistry&) = delete;

  // The per-call series (see metrics.h), read from the pipeline's atomics when collected:
  //   exposer.RegisterCollectable(registry);                // the breaker series
  //   exposer.RegisterCollectable(targets.call_metrics());  // calls, attempts, durations, ...
  // It may outlive the TargetRegistry, and then collects nothing.
  std::shared_ptr<prometheus::Collectable> call_metrics() const;

  // The target named `name`, created with its policy on first use.
  Target& GetTarget(std::string_view name);
  // The target named `name` if it was created, else null.
  Target* FindTarget(std::string_view name);
  // Every target created so far, sorted by name.
  std::vector<Target*> targets();

 private:
  class Collector;

  const Policy policy_;
  const base::Environment environment_;
  Metrics metrics_;
  base::Mutex mutex_;
  std::map<std::string, std::unique_ptr<Target>, std::less<>> targets_ ABSL_GUARDED_BY(mutex_);
  const std::shared_ptr<Collector> collector_;
};

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_TARGET_H_
