#include "resilience/circuit_breaker.h"

#include <algorithm>
#include <array>
#include <utility>

namespace resilience {
namespace {

ShardedWindow::Kind WindowKind(const CircuitBreakerConfig& config) {
  return config.window_type == CircuitBreakerConfig::WindowType::kTimeBased
             ? ShardedWindow::Kind::kTime
             : ShardedWindow::Kind::kCount;
}

bool Trips(const CircuitBreakerConfig& config, const WindowCounts& counts) {
  return counts.failure_rate_percent() >= config.failure_rate_threshold ||
         counts.slow_call_rate_percent() >= config.slow_call_rate_threshold;
}

BreakerState ResetState(const CircuitBreakerConfig& config) {
  return config.enabled ? BreakerState::kClosed : BreakerState::kDisabled;
}

}  // namespace

std::string_view BreakerStateName(BreakerState state) {
  static constexpr std::array<std::string_view, kBreakerStateCount> kNames = {
      "CLOSED", "OPEN", "HALF_OPEN", "FORCED_OPEN", "DISABLED"};
  return kNames[static_cast<std::size_t>(state)];
}

base::StatusCodeSet DefaultFailureCodes() {
  base::StatusCodeSet codes;
  for (int value = 0; value <= 16; ++value) {
    const auto code = static_cast<absl::StatusCode>(value);
    if (!kDefaultIgnoredCodes.Contains(code)) codes.Add(code);
  }
  return codes;
}

CircuitBreaker::CircuitBreaker(std::string name, const CircuitBreakerConfig& config,
                               base::Clock& clock, base::RandomSource& random, Listener* listener)
    : name_(std::move(name)),
      config_(config),
      clock_(clock),
      random_(random),
      listener_(listener),
      rejection_status_(absl::StatusCode::kUnavailable,
                        "circuit breaker '" + name_ + "' is open: call not sent"),
      state_(ResetState(config)),
      window_(WindowKind(config), config.window_size) {
  base::MutexLock lock(&mutex_);
  PublishLocked();
}

void CircuitBreaker::PublishLocked() {
  // Release order: a reader that sees the new word also sees open_until_nanos_ stored before.
  state_word_.store(generation_ << kStateBits | static_cast<std::uint64_t>(state_),
                    std::memory_order_release);
}

bool CircuitBreaker::TryAcquire(Permit& permit, absl::Time now) {
  // Fast path: the states that decide without counting.
  const std::uint64_t word = state_word_.load(std::memory_order_acquire);
  switch (StateOf(word)) {
    case BreakerState::kClosed:
      permit = Permit{GenerationOf(word), true};
      return true;
    case BreakerState::kDisabled:
      permit = Permit{GenerationOf(word), false};
      return true;
    case BreakerState::kForcedOpen:
      return false;
    case BreakerState::kOpen:
      if (absl::ToUnixNanos(now) < open_until_nanos_.load(std::memory_order_relaxed)) {
        return false;
      }
      break;
    case BreakerState::kHalfOpen:
      break;
  }
  Transition transition;
  bool permitted = false;
  {
    base::MutexLock lock(&mutex_);
    switch (state_) {
      case BreakerState::kClosed:
        permitted = true;
        break;
      case BreakerState::kDisabled:
        permit = Permit{generation_, false};
        return true;
      case BreakerState::kForcedOpen:
        return false;
      case BreakerState::kOpen:
        if (now < open_until_) return false;
        TransitionLocked(BreakerState::kHalfOpen, now, transition);
        [[fallthrough]];
      case BreakerState::kHalfOpen:
        if (probes_started_ < config_.half_open_permitted_calls) {
          ++probes_started_;
          probes_exhausted_.store(probes_started_ >= config_.half_open_permitted_calls,
                                  std::memory_order_relaxed);
          permitted = true;
        } else {
          ExpireHalfOpenLocked(now, transition);
        }
        break;
    }
    if (permitted) permit = Permit{generation_, true, state_ == BreakerState::kHalfOpen};
  }
  Notify(transition);
  return permitted;
}

void CircuitBreaker::Record(const Permit& permit, absl::StatusCode code, absl::Duration elapsed,
                            absl::Time now) {
  if (!permit.judged) return;
  RecordOutcome(permit, config_.failure_codes.Contains(code), elapsed >= config_.slow_call_duration,
                now);
}

void CircuitBreaker::RecordCallerCut(const Permit& permit, absl::Duration elapsed, absl::Time now) {
  if (!permit.judged) return;
  if (elapsed >= config_.slow_call_duration) {
    RecordOutcome(permit, /*failure=*/false, /*slow=*/true, now);
  } else {
    Release(permit);
  }
}

void CircuitBreaker::RecordOutcome(const Permit& permit, bool failure, bool slow, absl::Time now) {
  const std::uint64_t word = state_word_.load(std::memory_order_acquire);
  if (GenerationOf(word) != permit.generation) return;  // Admitted under an earlier state.
  if (StateOf(word) == BreakerState::kClosed) {
    // Into this thread's shard of the window, without the breaker's lock.
    window_.Record(permit.generation, now, failure, slow);
    // Only a failure or a slow call can raise a rate: a success is never judged, so the
    // healthy path reads no other thread's shard.
    if (!failure && !slow) return;
    const WindowCounts counts = window_.Counts(permit.generation, now);
    if (counts.calls < config_.minimum_calls || !Trips(config_, counts)) return;
    Transition transition;
    {
      base::MutexLock lock(&mutex_);
      if (generation_ == permit.generation && state_ == BreakerState::kClosed) {
        TransitionLocked(BreakerState::kOpen, now, transition);
      }
    }
    Notify(transition);
    return;
  }
  Transition transition;
  {
    base::MutexLock lock(&mutex_);
    if (permit.generation != generation_) return;
    if (state_ == BreakerState::kHalfOpen) {
      ++probe_results_.calls;
      if (failure) ++probe_results_.failures;
      if (slow) ++probe_results_.slow_calls;
      if (probe_results_.calls >= config_.half_open_permitted_calls) {
        TransitionLocked(
            Trips(config_, probe_results_) ? BreakerState::kOpen : BreakerState::kClosed, now,
            transition);
      }
    }
  }
  Notify(transition);
}

void CircuitBreaker::Release(const Permit& permit) {
  if (!permit.judged) return;
  base::MutexLock lock(&mutex_);
  if (permit.generation == generation_ && state_ == BreakerState::kHalfOpen &&
      probes_started_ > 0) {
    --probes_started_;
    probes_exhausted_.store(false, std::memory_order_relaxed);
  }
}

bool CircuitBreaker::ExpireHalfOpenLocked(absl::Time now, Transition& transition) {
  const std::uint32_t unanswered = probes_started_ - probe_results_.calls;
  if (unanswered == 0 || now < half_open_since_ + config_.max_wait_in_half_open) return false;
  // Judged on what is known, each unanswered probe a failure; their late outcomes carry the
  // old generation and are ignored.
  probe_results_.calls += unanswered;
  probe_results_.failures += unanswered;
  TransitionLocked(BreakerState::kOpen, now, transition);
  return true;
}

absl::Duration CircuitBreaker::NextOpenWaitLocked() {
  absl::Duration wait = config_.wait_in_open;
  for (std::uint32_t trip = 1; trip < consecutive_trips_ && wait < config_.max_wait_in_open;
       ++trip) {
    wait = wait * config_.wait_multiplier;
  }
  if (consecutive_trips_ > 1) wait = std::min(wait, config_.max_wait_in_open);
  if (config_.wait_jitter > 0) {
    // A factor in [1 - jitter, 1 + jitter).
    wait = wait * (1.0 + config_.wait_jitter * (2.0 * random_.Uniform01() - 1.0));
  }
  return wait;
}

void CircuitBreaker::TransitionLocked(BreakerState to, absl::Time now, Transition& transition) {
  if (state_ == to) return;
  // Several transitions may happen under one lock (OPEN -> HALF_OPEN -> ...); report the first
  // origin and the final state.
  if (!transition.happened) transition.from = state_;
  transition.happened = true;
  transition.to = to;
  state_ = to;
  ++generation_;
  probes_started_ = 0;
  probes_exhausted_.store(false, std::memory_order_relaxed);
  probe_results_ = {};
  switch (to) {
    case BreakerState::kOpen:
      ++consecutive_trips_;
      open_until_ = now + NextOpenWaitLocked();
      open_until_nanos_.store(absl::ToUnixNanos(open_until_), std::memory_order_relaxed);
      break;
    case BreakerState::kClosed:
    case BreakerState::kDisabled:
      // The new generation starts an empty window (ShardedWindow empties shards lazily).
      consecutive_trips_ = 0;
      break;
    case BreakerState::kHalfOpen:
      half_open_since_ = now;
      break;
    case BreakerState::kForcedOpen:
      break;
  }
  // Last: a lock-free reader that sees the new state word also sees what it depends on.
  PublishLocked();
}

void CircuitBreaker::Notify(const Transition& transition) {
  if (transition.happened && listener_ != nullptr && transition.from != transition.to) {
    listener_->OnStateChange(transition.from, transition.to);
  }
}

void CircuitBreaker::ForceOpen() {
  Transition transition;
  {
    base::MutexLock lock(&mutex_);
    TransitionLocked(BreakerState::kForcedOpen, clock_.Now(), transition);
  }
  Notify(transition);
}

void CircuitBreaker::Disable() {
  Transition transition;
  {
    base::MutexLock lock(&mutex_);
    TransitionLocked(BreakerState::kDisabled, clock_.Now(), transition);
  }
  Notify(transition);
}

void CircuitBreaker::Reset() {
  Transition transition;
  {
    base::MutexLock lock(&mutex_);
    const BreakerState target = ResetState(config_);
    if (state_ == target) {
      // Already there: still empty the window (a new generation), as the operator asked.
      consecutive_trips_ = 0;
      ++generation_;
      PublishLocked();
    } else {
      TransitionLocked(target, clock_.Now(), transition);
    }
  }
  Notify(transition);
}

bool CircuitBreaker::IsRejecting(absl::Time now) const {
  const std::uint64_t word = state_word_.load(std::memory_order_acquire);
  switch (StateOf(word)) {
    case BreakerState::kForcedOpen:
      return true;
    case BreakerState::kOpen:
      return absl::ToUnixNanos(now) < open_until_nanos_.load(std::memory_order_relaxed);
    case BreakerState::kHalfOpen:
      return probes_exhausted_.load(std::memory_order_relaxed);
    case BreakerState::kClosed:
    case BreakerState::kDisabled:
      return false;
  }
  return false;
}

BreakerState CircuitBreaker::state() {
  base::MutexLock lock(&mutex_);
  return state_;
}

BreakerSnapshot CircuitBreaker::Snapshot() {
  const absl::Time now = clock_.Now();
  base::MutexLock lock(&mutex_);
  BreakerSnapshot snapshot;
  snapshot.state = state_;
  snapshot.window =
      state_ == BreakerState::kHalfOpen ? probe_results_ : window_.Counts(generation_, now);
  snapshot.open_until = open_until_;
  snapshot.consecutive_trips = consecutive_trips_;
  snapshot.half_open_probes_started = probes_started_;
  return snapshot;
}

}  // namespace resilience
