// A circuit breaker for one downstream target, modelled on resilience4j's.
//
// States and transitions:
//   CLOSED     calls pass; each outcome enters a sliding window (count- or time-based). Once the
//              window holds minimum_calls calls, a failure rate or slow-call rate at or above
//              its threshold opens the breaker.
//   OPEN       calls are rejected until the wait is over; the wait grows by wait_multiplier on
//              each consecutive trip (up to max_wait) and is jittered so clients do not probe
//              in step. The first call after the wait moves the breaker to HALF_OPEN.
//   HALF_OPEN  exactly half_open_permitted_calls probe calls pass and every other call is
//              rejected, so a recovering service is not stampeded. When all probes have
//              finished, their failure and slow rates decide: OPEN again (a consecutive trip) or
//              CLOSED with an empty window. A probe still unanswered max_wait_in_half_open after
//              the breaker became HALF_OPEN counts as failed: the breaker opens again (checked
//              when a call asks), so a probe that hangs, or whose outcome is never reported,
//              cannot hold the breaker rejecting everything for longer than that.
//   FORCED_OPEN rejects everything, DISABLED lets everything through unjudged; both are set by
//              an operator and held until Reset().
//
// Each permission carries the breaker's generation (bumped on every transition), so the outcome
// of a call admitted under an earlier state never moves the current state.
//
// Thread-safe. TryAcquire and Record neither allocate nor throw. TryAcquire takes no lock in
// CLOSED, DISABLED, FORCED_OPEN and while OPEN waits (the state is mirrored in one atomic word).
// In CLOSED, Record takes only the lock of this thread's shard of the window (ShardedWindow), so
// threads recording at once do not wait for each other; only a failure or a slow call can raise
// a rate, so only those are judged, against the merged window (a success never opens the
// breaker, even one that brings the window to minimum_calls: the next failure judges it).
// HALF_OPEN takes the breaker's lock. Transitions are reported to the listener outside the
// lock.
#ifndef HOSPITAL_SRC_RESILIENCE_CIRCUIT_BREAKER_H_
#define HOSPITAL_SRC_RESILIENCE_CIRCUIT_BREAKER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "base/status.h"
#include "base/sync.h"
#include "resilience/sliding_window.h"

namespace resilience {

enum class BreakerState { kClosed, kOpen, kHalfOpen, kForcedOpen, kDisabled };

inline constexpr int kBreakerStateCount = 5;

// "CLOSED", "OPEN", "HALF_OPEN", "FORCED_OPEN", "DISABLED".
std::string_view BreakerStateName(BreakerState state);

// The codes that do not count as failures by default: they describe the request, not the health
// of the server.
inline constexpr base::StatusCodeSet kDefaultIgnoredCodes = {
    absl::StatusCode::kOk, absl::StatusCode::kInvalidArgument, absl::StatusCode::kNotFound,
    absl::StatusCode::kAlreadyExists, absl::StatusCode::kFailedPrecondition};

// Every code but those in kDefaultIgnoredCodes.
base::StatusCodeSet DefaultFailureCodes();

struct CircuitBreakerConfig {
  enum class WindowType { kCountBased, kTimeBased };
  bool enabled = true;  // false: the breaker starts (and resets to) DISABLED.
  WindowType window_type = WindowType::kCountBased;
  std::uint32_t window_size = 100;  // Calls, or seconds.
  std::uint32_t minimum_calls = 20;
  double failure_rate_threshold = 50.0;     // Percent.
  double slow_call_rate_threshold = 100.0;  // Percent.
  absl::Duration slow_call_duration = absl::Seconds(60);
  absl::Duration wait_in_open = absl::Seconds(5);
  double wait_multiplier = 1.0;
  absl::Duration max_wait_in_open = absl::Seconds(5);
  double wait_jitter = 0.0;  // Fraction in [0, 1).
  std::uint32_t half_open_permitted_calls = 10;
  absl::Duration max_wait_in_half_open = absl::Seconds(60);
  base::StatusCodeSet failure_codes = DefaultFailureCodes();
};

// A point-in-time view, for the admin service and tests.
struct BreakerSnapshot {
  BreakerState state = BreakerState::kClosed;
  WindowCounts window;
  absl::Time open_until = absl::InfinitePast();
  std::uint32_t consecutive_trips = 0;
  std::uint32_t half_open_probes_started = 0;
};

class CircuitBreaker final {
 public:
  // Told of every state change, outside the breaker's lock. Must not call back into the breaker
  // synchronously in a way that could deadlock (reading is fine).
  class Listener {
   public:
    virtual ~Listener() = default;
    virtual void OnStateChange(BreakerState from, BreakerState to) = 0;
  };

  // A permission to make one call. Pass it back to exactly one of Record or Release.
  struct Permit {
    std::uint64_t generation = 0;
    bool judged = false;  // False when DISABLED: the outcome is not recorded.
    bool probe = false;   // One of the HALF_OPEN state's permitted calls.
  };

  // `name` appears in the rejection message. `listener` may be null.
  CircuitBreaker(std::string name, const CircuitBreakerConfig& config, base::Clock& clock,
                 base::RandomSource& random, Listener* listener);

  // Asks to make a call at time `now` (read from the breaker's clock). Returns true and fills
  // `permit` if it may proceed; false if rejected.
  bool TryAcquire(Permit& permit, absl::Time now);
  // Records the outcome of a permitted call that ended at `now` after `elapsed`.
  void Record(const Permit& permit, absl::StatusCode code, absl::Duration elapsed, absl::Time now);
  // Records a call that the caller cut short (its own deadline ran out, or it cancelled): that
  // says nothing about the downstream's errors, so it is never a failure. If it had already
  // lasted slow_call_duration it counts as a slow call; otherwise as if it never happened
  // (Release).
  void RecordCallerCut(const Permit& permit, absl::Duration elapsed, absl::Time now);
  // Returns a permission that was not used (for example the bulkhead refused the call).
  void Release(const Permit& permit);

  // Operator overrides.
  void ForceOpen();
  void Disable();
  // Back to CLOSED (or DISABLED when the config disables the breaker), with an empty window.
  void Reset();

  // Whether a call made at `now` would be rejected (FORCED_OPEN, OPEN with its wait not over,
  // or HALF_OPEN with every probe slot taken). Takes no permission and no lock: for callers
  // that want to fail before doing work the call would need. A HALF_OPEN breaker whose probes
  // all finish before `now` may let the call through after all; the answer is the likely one.
  bool IsRejecting(absl::Time now) const;

  BreakerState state();
  BreakerSnapshot Snapshot();
  const std::string& name() const { return name_; }
  // UNAVAILABLE naming the breaker; built once, so rejecting a call does not allocate.
  const absl::Status& rejection_status() const { return rejection_status_; }

 private:
  // A transition to report after the lock is released.
  struct Transition {
    bool happened = false;
    BreakerState from = BreakerState::kClosed;
    BreakerState to = BreakerState::kClosed;
  };

  void TransitionLocked(BreakerState to, absl::Time now, Transition& transition)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  absl::Duration NextOpenWaitLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Counts the probes still unanswered as failed once HALF_OPEN has lasted its maximum, and
  // opens the breaker. Returns whether it did.
  bool ExpireHalfOpenLocked(absl::Time now, Transition& transition)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void Notify(const Transition& transition);
  void RecordOutcome(const Permit& permit, bool failure, bool slow, absl::Time now);
  // Mirrors state_ and generation_ into state_word_.
  void PublishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const std::string name_;
  const CircuitBreakerConfig config_;
  base::Clock& clock_;
  base::RandomSource& random_;
  Listener* const listener_;
  const absl::Status rejection_status_;

  // The state and generation, packed as generation << 3 | state, so that the fast path reads
  // both in one atomic load. Written only under mutex_.
  static constexpr std::uint64_t kStateBits = 3;
  static BreakerState StateOf(std::uint64_t word) {
    return static_cast<BreakerState>(word & ((1u << kStateBits) - 1));
  }
  static std::uint64_t GenerationOf(std::uint64_t word) { return word >> kStateBits; }
  std::atomic<std::uint64_t> state_word_;
  // Mirrors open_until_ for the lock-free check while OPEN; written only under mutex_, before
  // the state word that makes it relevant.
  std::atomic<std::int64_t> open_until_nanos_{0};
  // Whether HALF_OPEN has handed out every probe slot, for IsRejecting; written under mutex_.
  std::atomic<bool> probes_exhausted_{false};

  base::Mutex mutex_;
  BreakerState state_ ABSL_GUARDED_BY(mutex_);
  std::uint64_t generation_ ABSL_GUARDED_BY(mutex_) = 1;
  // Recorded into without mutex_ in CLOSED (each thread into its own shard); a transition
  // starts a new window by changing generation_.
  ShardedWindow window_;
  absl::Time open_until_ ABSL_GUARDED_BY(mutex_) = absl::InfinitePast();
  std::uint32_t consecutive_trips_ ABSL_GUARDED_BY(mutex_) = 0;
  std::uint32_t probes_started_ ABSL_GUARDED_BY(mutex_) = 0;
  absl::Time half_open_since_ ABSL_GUARDED_BY(mutex_) = absl::InfinitePast();
  WindowCounts probe_results_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_CIRCUIT_BREAKER_H_
