#include "resilience/target.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace resilience {

GuardedMethod::GuardedMethod(Target& target, std::string full_name, const MethodPolicy& policy,
                             const MethodMetrics& metrics)
    : target_(target),
      full_name_(std::move(full_name)),
      policy_(policy),
      metrics_(metrics),
      deadline_spent_status_(grpc::StatusCode::DEADLINE_EXCEEDED,
                             absl::StrCat("deadline of call to '", target.name(), "' ", full_name_,
                                          " was spent before an attempt could be sent")),
      bulkhead_full_status_(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("bulkhead of '", target.name(), "' is full: too many concurrent calls")) {}

Target::Target(std::string name, const TargetPolicy& policy, Environment environment,
               Metrics& metrics)
    : name_(std::move(name)),
      policy_(policy),
      environment_(environment),
      metrics_(metrics),
      target_metrics_(metrics.ForTarget(name_)),
      breaker_(name_, policy.breaker, *environment.clock, *environment.random, this),
      budget_(policy.budget, *environment.clock),
      bulkhead_(policy.bulkhead, environment) {
  target_metrics_.breaker_state[static_cast<std::size_t>(breaker_.state())]->Set(1);
  target_metrics_.budget_tokens->Set(budget_.tokens());
}

GuardedMethod& Target::Method(std::string_view full_name) {
  MutexLock lock(&mutex_);
  auto it = methods_.find(full_name);
  if (it == methods_.end()) {
    std::string name(full_name);
    auto method = std::make_unique<GuardedMethod>(*this, name, policy_.ForMethod(full_name),
                                                  metrics_.ForMethod(name_, name));
    it = methods_.emplace(std::move(name), std::move(method)).first;
  }
  return *it->second;
}

void Target::OnStateChange(BreakerState from, BreakerState to) {
  metrics_.CountTransition(name_, from, to);
  // Reads the state afresh instead of trusting `to`: notifications of two quick transitions can
  // arrive out of order, and the last reader must leave the gauge on the real state.
  const BreakerState current = breaker_.state();
  for (int i = 0; i < kBreakerStateCount; ++i) {
    target_metrics_.breaker_state[static_cast<std::size_t>(i)]->Set(
        static_cast<BreakerState>(i) == current ? 1 : 0);
  }
}

TargetRegistry::TargetRegistry(Policy policy, Environment environment,
                               prometheus::Registry& registry)
    : policy_(std::move(policy)), environment_(environment), metrics_(registry) {}

Target& TargetRegistry::GetTarget(std::string_view name) {
  MutexLock lock(&mutex_);
  auto it = targets_.find(name);
  if (it == targets_.end()) {
    std::string key(name);
    auto target = std::make_unique<Target>(key, policy_.ForTarget(name), environment_, metrics_);
    it = targets_.emplace(std::move(key), std::move(target)).first;
  }
  return *it->second;
}

Target* TargetRegistry::FindTarget(std::string_view name) {
  MutexLock lock(&mutex_);
  auto it = targets_.find(name);
  return it == targets_.end() ? nullptr : it->second.get();
}

std::vector<Target*> TargetRegistry::targets() {
  MutexLock lock(&mutex_);
  std::vector<Target*> result;
  result.reserve(targets_.size());
  for (auto& [name, target] : targets_) result.push_back(target.get());
  return result;
}

}  // namespace resilience
