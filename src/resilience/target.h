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

#include <atomic>
#include <functional>

#include <prometheus/collectable.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "base/clock.h"
#include "base/sharded_counter.h"
#include "base/sync.h"
#include "resilience/adaptive_throttle.h"
#include "resilience/bulkhead.h"
#include "resilience/circuit_breaker.h"
#include "resilience/endpoint_balancer.h"
#include "resilience/metrics.h"
#include "resilience/policy.h"
#include "resilience/retry_budget.h"

namespace resilience {

class GuardedCall;
class Target;

// Something a call waits for on the target's scheduler (a retry's backoff, the next hedge),
// which Target::Shutdown ends at once instead of letting it run its course.
class ScheduledWait {
 public:
  virtual ~ScheduledWait() = default;
  // The wait is over: its time came (on the scheduler's thread) or the target is shutting down
  // (on Shutdown's). Called exactly once for each ScheduleWait that returned true and was not
  // taken back by CancelWait.
  virtual void OnWaitOver() = 0;

 private:
  friend class Target;
  base::Scheduler::TimerId wait_timer_ = 0;  // Under the target's waits lock.
};

// One method of a target: its policy, metrics and prebuilt error statuses.
class GuardedMethod final {
 public:
  // `shared_metrics`: where to record instead of a series of its own (the target's "other"
  // series, beyond kMaxMethodSeriesPerTarget names); null for its own.
  GuardedMethod(Target& target, std::string full_name, const MethodPolicy& policy,
                MethodMetrics* shared_metrics = nullptr);

  Target& target() const { return target_; }
  const std::string& full_name() const { return full_name_; }
  // The deadline of a call started at `start` on behalf of a request due at `parent_deadline`:
  // the earlier of start + timeout and parent_deadline - deadline_margin. Sets `callers` to
  // whether it is the caller's (the second) rather than the policy's.
  absl::Time CallDeadline(absl::Time start, absl::Time parent_deadline, bool& callers) const {
    const absl::Time callers_deadline = parent_deadline - policy_.deadline_margin;
    callers = callers_deadline < start + policy_.timeout;
    return callers ? callers_deadline : start + policy_.timeout;
  }
  const MethodPolicy& policy() const { return policy_; }
  // Recorded by the pipeline on every call; read by TargetRegistry::call_metrics().
  MethodMetrics& metrics() { return *metrics_; }
  // Whether metrics() is this method's own series.
  bool has_own_series() const { return metrics_ == &own_metrics_; }
  // DEADLINE_EXCEEDED for a call whose time was spent before an attempt could be sent.
  const absl::Status& deadline_spent_status() const { return deadline_spent_status_; }
  // RESOURCE_EXHAUSTED for a call the bulkhead turned away.
  const absl::Status& bulkhead_full_status() const { return bulkhead_full_status_; }
  // CANCELLED for a call its caller cancelled.
  const absl::Status& cancelled_status() const { return cancelled_status_; }
  // CANCELLED for a call ended by the target's shutdown.
  const absl::Status& shutdown_status() const { return shutdown_status_; }
  // UNAVAILABLE for a call that adaptive throttling rejected locally.
  const absl::Status& throttled_status() const { return throttled_status_; }

 private:
  Target& target_;
  const std::string full_name_;
  const MethodPolicy policy_;
  MethodMetrics own_metrics_;
  MethodMetrics* const metrics_;
  const absl::Status deadline_spent_status_;
  const absl::Status bulkhead_full_status_;
  const absl::Status cancelled_status_;
  const absl::Status shutdown_status_;
  const absl::Status throttled_status_;
};

class Target final : private CircuitBreaker::Listener {
 public:
  Target(std::string name, const TargetPolicy& policy, base::Environment environment,
         Metrics& metrics);
  // Shuts down first (see Shutdown).
  ~Target() override;
  Target(const Target&) = delete;
  Target& operator=(const Target&) = delete;

  // Ends the target's calls, each exactly once: calls waiting for a retry or a bulkhead slot
  // end now with CANCELLED, calls started from now on end with CANCELLED before sending, and
  // the attempts in flight are waited for (their deadlines bound the wait). Returns when no
  // call of the target is left and no timer of theirs is pending. Idempotent. Must not be
  // called from a call's continuation (it would wait for that very call).
  void Shutdown();
  bool shutting_down() const { return shutting_down_.load(std::memory_order_acquire); }

  // Calls `wait.OnWaitOver()` at `at` on the scheduler, or from Shutdown if that comes first.
  // Returns false, scheduling nothing, once Shutdown has begun. One wait per object at a time.
  bool ScheduleWait(absl::Time at, ScheduledWait& wait);
  // Takes back a scheduled wait: true if OnWaitOver will not be called for it; false if it has
  // been or is being called (on another thread; this then waits for it to return). Must not be
  // called from OnWaitOver, nor holding a lock that OnWaitOver takes.
  bool CancelWait(ScheduledWait& wait);

  // The method named "/package.Service/Method", created on first use. Beyond
  // kMaxMethodSeriesPerTarget names, a new name gets its policy but records into the target's
  // "other" series (other_metrics()), and shares one GuardedMethod, named "other", with every
  // further name that the same policy entry covers.
  GuardedMethod& Method(std::string_view full_name);
  // Every method with a series of its own, sorted by name.
  std::vector<GuardedMethod*> methods();
  // The series of the names beyond the cap; null while there are none.
  const MethodMetrics* other_metrics();
  // Calls `listener` after every breaker transition, on the thread that caused it (for a move
  // to HALF_OPEN: the first probe's, before the probe is sent), with no lock of the target or
  // the breaker held. It must not block. Listeners are kept for the target's life.
  void AddStateListener(std::function<void(BreakerState from, BreakerState to)> listener);

  const std::string& name() const { return name_; }
  const TargetPolicy& policy() const { return policy_; }
  // The balancer of the target's endpoints while an EndpointSet (endpoint_set.h) serves it,
  // for metrics and the admin service; null otherwise.
  std::shared_ptr<EndpointBalancer> balancer() const;
  // Called by EndpointSet: the balancer serving the target from now on, and no longer.
  void AttachBalancer(std::shared_ptr<EndpointBalancer> balancer);
  void DetachBalancer(const EndpointBalancer* balancer);
  CircuitBreaker& breaker() { return breaker_; }
  RetryBudget& budget() { return budget_; }
  Bulkhead& bulkhead() { return bulkhead_; }
  AdaptiveThrottle& throttle() { return throttle_; }
  base::Environment environment() const { return environment_; }

 private:
  void OnStateChange(BreakerState from, BreakerState to) override;

  const std::string name_;
  const TargetPolicy policy_;
  const base::Environment environment_;
  Metrics& metrics_;
  CircuitBreaker breaker_;
  RetryBudget budget_;
  Bulkhead bulkhead_;
  AdaptiveThrottle throttle_;

  friend class GuardedCall;
  friend class HedgedCall;
  // Calls waiting on the scheduler, by their timer, so that Shutdown can end them at once.
  // Touched only on the retry and hedging paths.
  base::Mutex waits_mutex_;
  std::map<base::Scheduler::TimerId, ScheduledWait*> waits_ ABSL_GUARDED_BY(waits_mutex_);
  bool waits_closed_ ABSL_GUARDED_BY(waits_mutex_) = false;
  std::atomic<bool> shutting_down_{false};
  // Calls started and not yet ended: Shutdown waits for none to be left.
  base::ShardedCounter live_calls_;

  mutable base::Mutex mutex_;
  std::map<std::string, std::unique_ptr<GuardedMethod>, std::less<>> methods_
      ABSL_GUARDED_BY(mutex_);
  // Beyond the cap: one method per policy entry, all recording into other_metrics_.
  std::map<const MethodPolicy*, std::unique_ptr<GuardedMethod>> overflow_methods_
      ABSL_GUARDED_BY(mutex_);
  MethodMetrics other_metrics_;
  std::vector<std::function<void(BreakerState, BreakerState)>> state_listeners_
      ABSL_GUARDED_BY(mutex_);
  std::shared_ptr<EndpointBalancer> balancer_ ABSL_GUARDED_BY(mutex_);
};

// All targets of a process, created from one policy.
class TargetRegistry final {
 public:
  // `environment`'s members and `registry` must outlive this object. The breaker series go to
  // `registry`; register call_metrics() with the same exposer for the per-call series.
  TargetRegistry(Policy policy, base::Environment environment, prometheus::Registry& registry);
  // Shuts every target down (Target::Shutdown) before anything is freed, so that no call and
  // no timer outlives the registry.
  ~TargetRegistry();
  // Target::Shutdown for every target created so far.
  void Shutdown();
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
