#include "resilience/target.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "resilience/guarded_call.h"

namespace resilience {

GuardedMethod::GuardedMethod(Target& target, std::string full_name, const MethodPolicy& policy,
                             MethodMetrics* shared_metrics)
    : target_(target),
      full_name_(std::move(full_name)),
      policy_(policy),
      metrics_(shared_metrics != nullptr ? shared_metrics : &own_metrics_),
      deadline_spent_status_(absl::StatusCode::kDeadlineExceeded,
                             absl::StrCat("deadline of call to '", target.name(), "' ", full_name_,
                                          " was spent before an attempt could be sent")),
      bulkhead_full_status_(
          absl::StatusCode::kResourceExhausted,
          absl::StrCat("bulkhead of '", target.name(), "' is full: too many concurrent calls")),
      cancelled_status_(absl::StatusCode::kCancelled,
                        absl::StrCat("call to '", target.name(), "' ", full_name_,
                                     " was cancelled by its caller")),
      shutdown_status_(absl::StatusCode::kCancelled,
                       absl::StrCat("call to '", target.name(), "' ", full_name_,
                                    " was cancelled: the client is shutting down")),
      throttled_status_(absl::StatusCode::kUnavailable,
                        absl::StrCat("adaptive throttling of '", target.name(),
                                     "' rejected the call locally: the target has been "
                                     "rejecting most requests")) {}

Target::Target(std::string name, const TargetPolicy& policy, base::Environment environment,
               Metrics& metrics)
    : name_(std::move(name)),
      policy_(policy),
      environment_(environment),
      metrics_(metrics),
      breaker_(name_, policy.breaker, *environment.clock, *environment.random, this),
      budget_(policy.budget, *environment.clock),
      bulkhead_(policy.bulkhead, environment),
      throttle_(policy.throttle, *environment.random) {}

Target::~Target() { Shutdown(); }

void Target::Shutdown() {
  shutting_down_.store(true, std::memory_order_release);
  std::map<base::Scheduler::TimerId, ScheduledWait*> waiting;
  {
    base::MutexLock lock(&waits_mutex_);
    waits_closed_ = true;  // Nothing is scheduled from now on.
    waiting.swap(waits_);
  }
  for (const auto& [timer, wait] : waiting) {
    // False: the timer has run (or Cancel waited for it), and the call went on by itself.
    if (environment_.scheduler->Cancel(timer)) wait->OnWaitOver();
  }
  bulkhead_.Shutdown();
  // Attempts in flight end by their deadlines; a finished call leaves the count last of all.
  while (live_calls_.Sum() > 0) absl::SleepFor(absl::Milliseconds(1));
}

bool Target::ScheduleWait(absl::Time at, ScheduledWait& wait) {
  // The timer cannot fire before the entry exists: its callback takes the same lock first.
  base::MutexLock lock(&waits_mutex_);
  if (waits_closed_) return false;
  wait.wait_timer_ = environment_.scheduler->RunAt(at, [this, &wait] {
    {
      base::MutexLock timer_lock(&waits_mutex_);
      waits_.erase(wait.wait_timer_);
    }
    wait.OnWaitOver();
  });
  waits_.emplace(wait.wait_timer_, &wait);
  return true;
}

bool Target::CancelWait(ScheduledWait& wait) {
  base::Scheduler::TimerId timer;
  {
    base::MutexLock lock(&waits_mutex_);
    auto it = waits_.find(wait.wait_timer_);
    // Not there: the timer fired, or Shutdown took it; either calls OnWaitOver.
    if (it == waits_.end() || it->second != &wait) return false;
    timer = it->first;
    waits_.erase(it);
  }
  // False only if the callback is running (its erase found nothing): it calls OnWaitOver.
  return environment_.scheduler->Cancel(timer);
}

GuardedMethod& Target::Method(std::string_view full_name) {
  base::MutexLock lock(&mutex_);
  if (auto it = methods_.find(full_name); it != methods_.end()) return *it->second;
  const MethodPolicy& policy = policy_.ForMethod(full_name);
  if (methods_.size() >= static_cast<std::size_t>(kMaxMethodSeriesPerTarget)) {
    std::unique_ptr<GuardedMethod>& shared = overflow_methods_[&policy];
    if (shared == nullptr) {
      shared = std::make_unique<GuardedMethod>(*this, kOtherMethodLabel, policy, &other_metrics_);
    }
    return *shared;
  }
  std::string name(full_name);
  auto method = std::make_unique<GuardedMethod>(*this, name, policy);
  return *methods_.emplace(std::move(name), std::move(method)).first->second;
}

const MethodMetrics* Target::other_metrics() {
  base::MutexLock lock(&mutex_);
  return overflow_methods_.empty() ? nullptr : &other_metrics_;
}

std::vector<GuardedMethod*> Target::methods() {
  base::MutexLock lock(&mutex_);
  std::vector<GuardedMethod*> result;
  result.reserve(methods_.size());
  for (auto& [name, method] : methods_) result.push_back(method.get());
  return result;
}

void Target::AddStateListener(std::function<void(BreakerState from, BreakerState to)> listener) {
  base::MutexLock lock(&mutex_);
  state_listeners_.push_back(std::move(listener));
}

std::shared_ptr<EndpointBalancer> Target::balancer() const {
  base::MutexLock lock(&mutex_);
  return balancer_;
}

void Target::AttachBalancer(std::shared_ptr<EndpointBalancer> balancer) {
  base::MutexLock lock(&mutex_);
  balancer_ = std::move(balancer);
}

void Target::DetachBalancer(const EndpointBalancer* balancer) {
  base::MutexLock lock(&mutex_);
  if (balancer_.get() == balancer) balancer_.reset();
}

void Target::OnStateChange(BreakerState from, BreakerState to) {
  std::vector<std::function<void(BreakerState, BreakerState)>> listeners;
  {
    base::MutexLock lock(&mutex_);
    listeners = state_listeners_;  // Copied: a listener may reach code that takes mutex_.
  }
  for (const auto& listener : listeners) listener(from, to);
  metrics_.CountTransition(name_, from, to);
}

namespace {

// The endpoint series of one target; beyond kMaxEndpointSeriesPerTarget endpoints, the rest are
// summed under "other" (its ejected and reachable gauges count endpoints; no latency).
void AddEndpoints(std::vector<prometheus::MetricFamily>& families, const std::string& target,
                  const std::vector<EndpointSnapshot>& endpoints) {
  struct Series {
    std::string endpoint;
    double ejected = 0, ejections = 0, reachable = 0, in_flight = 0, attempts = 0, failures = 0;
    std::optional<double> latency;
  };
  std::vector<Series> series;
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    const EndpointSnapshot& endpoint = endpoints[i];
    const bool own = i < static_cast<std::size_t>(kMaxEndpointSeriesPerTarget);
    if (own || i == static_cast<std::size_t>(kMaxEndpointSeriesPerTarget)) {
      series.emplace_back();
      series.back().endpoint = own ? endpoint.address : "other";
      if (own) series.back().latency = absl::ToDoubleSeconds(endpoint.latency);
    }
    Series& into = series.back();
    into.ejected += endpoint.ejected ? 1 : 0;
    into.ejections += endpoint.times_ejected;
    into.reachable += endpoint.reachable ? 1 : 0;
    into.in_flight += endpoint.in_flight;
    into.attempts += static_cast<double>(endpoint.attempts);
    into.failures += static_cast<double>(endpoint.failures);
  }
  const auto add = [&](CallFamily family, const Series& of, double value, bool counter) {
    prometheus::ClientMetric metric;
    metric.label = {{"endpoint", of.endpoint}, {"target", target}};
    (counter ? metric.counter.value : metric.gauge.value) = value;
    families[static_cast<std::size_t>(family)].metric.push_back(std::move(metric));
  };
  for (const Series& of : series) {
    add(CallFamily::kEndpointEjected, of, of.ejected, false);
    add(CallFamily::kEndpointEjections, of, of.ejections, true);
    add(CallFamily::kEndpointReachable, of, of.reachable, false);
    add(CallFamily::kEndpointInFlight, of, of.in_flight, false);
    if (of.latency) add(CallFamily::kEndpointLatency, of, *of.latency, false);
    add(CallFamily::kEndpointAttempts, of, of.attempts, true);
    add(CallFamily::kEndpointFailures, of, of.failures, true);
  }
}

}  // namespace

// Builds the per-call metric families from the targets' atomics on each scrape. Holds the
// registry by pointer under a lock, so that a scrape racing with the registry's destruction
// either finishes first or finds nothing.
class TargetRegistry::Collector final : public prometheus::Collectable {
 public:
  explicit Collector(TargetRegistry* registry) : registry_(registry) {}

  void Detach() {
    base::MutexLock lock(&mutex_);
    registry_ = nullptr;
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    base::MutexLock lock(&mutex_);
    if (registry_ == nullptr) return {};
    std::vector<prometheus::MetricFamily> families = EmptyCallFamilies();
    const auto add = [&families](CallFamily family, prometheus::ClientMetric metric) {
      families[static_cast<std::size_t>(family)].metric.push_back(std::move(metric));
    };
    for (Target* target : registry_->targets()) {
      prometheus::ClientMetric gauge;
      gauge.label = {{"target", target->name()}};
      gauge.gauge.value = target->bulkhead().in_flight();
      add(CallFamily::kBulkheadInFlight, gauge);
      gauge.gauge.value = target->budget().tokens();
      add(CallFamily::kBudgetTokens, gauge);
      if (target->throttle().enabled()) {
        gauge.gauge.value =
            target->throttle().RejectionProbability(target->environment().clock->Now());
        add(CallFamily::kThrottleProbability, gauge);
      }
      // One read: the five series agree even while the breaker moves.
      const BreakerState state = target->breaker().state();
      for (int i = 0; i < kBreakerStateCount; ++i) {
        prometheus::ClientMetric state_gauge;
        state_gauge.label = {{"state", std::string(BreakerStateName(static_cast<BreakerState>(i)))},
                             {"target", target->name()}};
        state_gauge.gauge.value = static_cast<BreakerState>(i) == state ? 1 : 0;
        add(CallFamily::kBreakerState, std::move(state_gauge));
      }
      for (GuardedMethod* method : target->methods()) {
        AddMethod(families, target->name(), method->full_name(), method->metrics());
      }
      if (const MethodMetrics* other = target->other_metrics()) {
        AddMethod(families, target->name(), kOtherMethodLabel, *other);
      }
      if (std::shared_ptr<EndpointBalancer> balancer = target->balancer()) {
        AddEndpoints(families, target->name(), balancer->Snapshot());
      }
    }
    return families;
  }

 private:
  static void AddMethod(std::vector<prometheus::MetricFamily>& families, const std::string& target,
                        const std::string& method, const MethodMetrics& recorded) {
    const auto add = [&families](CallFamily family, prometheus::ClientMetric metric) {
      families[static_cast<std::size_t>(family)].metric.push_back(std::move(metric));
    };
    prometheus::ClientMetric metric;
    metric.label = {{"method", method}, {"target", target}};
    for (int i = 0; i < kCallOutcomeCount; ++i) {
      prometheus::ClientMetric outcome = metric;
      outcome.label.push_back(
          {"outcome", std::string(CallOutcomeName(static_cast<CallOutcome>(i)))});
      outcome.counter.value =
          static_cast<double>(recorded.calls[static_cast<std::size_t>(i)].value());
      add(CallFamily::kCalls, std::move(outcome));
    }
    metric.counter.value = static_cast<double>(recorded.attempts.value());
    add(CallFamily::kAttempts, metric);
    metric.counter.value = static_cast<double>(recorded.retries.value());
    add(CallFamily::kRetries, metric);
    metric.counter.value = static_cast<double>(recorded.hedges.value());
    add(CallFamily::kHedges, metric);
    metric.counter.value = 0;
    metric.histogram = recorded.call_duration.Snapshot();
    add(CallFamily::kCallDuration, metric);
    metric.histogram = recorded.attempt_duration.Snapshot();
    add(CallFamily::kAttemptDuration, metric);
  }

  mutable base::Mutex mutex_;
  TargetRegistry* registry_ ABSL_GUARDED_BY(mutex_);
};

TargetRegistry::TargetRegistry(Policy policy, base::Environment environment,
                               prometheus::Registry& registry)
    : policy_(std::move(policy)),
      environment_(environment),
      metrics_(registry),
      collector_(std::make_shared<Collector>(this)) {}

TargetRegistry::~TargetRegistry() {
  collector_->Detach();
  Shutdown();
}

void TargetRegistry::Shutdown() {
  for (Target* target : targets()) target->Shutdown();
}

std::shared_ptr<prometheus::Collectable> TargetRegistry::call_metrics() const { return collector_; }

Target& TargetRegistry::GetTarget(std::string_view name) {
  base::MutexLock lock(&mutex_);
  auto it = targets_.find(name);
  if (it == targets_.end()) {
    std::string key(name);
    auto target = std::make_unique<Target>(key, policy_.ForTarget(name), environment_, metrics_);
    it = targets_.emplace(std::move(key), std::move(target)).first;
  }
  return *it->second;
}

Target* TargetRegistry::FindTarget(std::string_view name) {
  base::MutexLock lock(&mutex_);
  auto it = targets_.find(name);
  return it == targets_.end() ? nullptr : it->second.get();
}

std::vector<Target*> TargetRegistry::targets() {
  base::MutexLock lock(&mutex_);
  std::vector<Target*> result;
  result.reserve(targets_.size());
  for (auto& [name, target] : targets_) result.push_back(target.get());
  return result;
}

}  // namespace resilience
