// Cost of the resilience pipeline on an in-process fake call, so that only the library is
// measured: no network, no serialisation.
//
//   BM_RawCall               the fake call alone (the baseline)
//   BM_PipelineSuccess       deadline + retry + budget + breaker + bulkhead + metrics, success
//   BM_PipelineNoBulkhead    the same without a bulkhead: nothing every call must share
//   BM_OpenBreakerRejection  a call rejected by an open breaker
//
// Each runs on one and on two threads calling one target (with N threads Google Benchmark
// reports wall time over all threads' iterations, so calls per second is 1e9 / real_time
// whatever N is; scripts/bench-resilience.sh prints the two-thread / one-thread ratio). Each
// reports allocs_per_call, counted by replacing the global operator new in this binary.
#include <atomic>
#include <cstdlib>
#include <new>
#include <optional>

#include <benchmark/benchmark.h>

#include "echo/v1/echo.pb.h"
#include "resilience/grpc_call.h"
#include "resilience/guarded_call.h"

namespace {

std::atomic<long> g_allocations{0};

}  // namespace

// The replacements pair malloc with free; GCC cannot see that through the inlined static
// initialisers of the benchmark registrations and warns of a mismatch that is not there.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace resilience {
namespace {

constexpr char kFullPolicy[] = R"({"defaultTarget": {
  "methodConfig": [{"timeout": "1s", "perAttemptTimeout": "0.5s", "deadlineMargin": "0.01s",
    "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.01s", "maxBackoff": "0.1s",
                    "backoffMultiplier": 2}}],
  "retryBudget": {"ratio": 0.1, "minRetriesPerSecond": 10, "maxTokens": 100},
  "circuitBreaker": {"slidingWindowSize": 100, "minimumNumberOfCalls": 20},
  "bulkhead": {"maxConcurrentCalls": 1000}}})";

constexpr char kNoBulkheadPolicy[] = R"({"defaultTarget": {
  "methodConfig": [{"timeout": "1s", "perAttemptTimeout": "0.5s", "deadlineMargin": "0.01s",
    "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.01s", "maxBackoff": "0.1s",
                    "backoffMultiplier": 2}}],
  "retryBudget": {"ratio": 0.1, "minRetriesPerSecond": 10, "maxTokens": 100},
  "circuitBreaker": {"slidingWindowSize": 100, "minimumNumberOfCalls": 20}}})";

// Answers every attempt at once, with a fixed status.
class InstantCall final : public GuardedCall {
 public:
  explicit InstantCall(GuardedMethod& method) : GuardedCall(method) {}
  absl::StatusCode last_code = absl::StatusCode::kUnknown;

 private:
  void StartAttempt(absl::Time) override { FinishAttempt(absl::OkStatus()); }
  void OnDone(const absl::Status& status) override { last_code = status.code(); }
};

struct Pipeline {
  explicit Pipeline(const char* policy_json) {
    absl::StatusOr<Policy> policy = ParsePolicyJson(policy_json);
    if (!policy.ok()) std::abort();
    targets.emplace(*std::move(policy), env.environment(), registry);
    method = &targets->GetTarget("downstream").Method("/bench.v1.Bench/Call");
  }
  base::RealEnvironment env;
  prometheus::Registry registry;
  std::optional<TargetRegistry> targets;
  GuardedMethod* method = nullptr;
};

Pipeline& SharedPipeline() {
  static Pipeline* const pipeline = new Pipeline(kFullPolicy);
  return *pipeline;
}

Pipeline& SharedPipelineWithoutBulkhead() {
  static Pipeline* const pipeline = new Pipeline(kNoBulkheadPolicy);
  return *pipeline;
}

void ReportAllocations(benchmark::State& state, long before) {
  state.counters["allocs_per_call"] = benchmark::Counter(
      static_cast<double>(g_allocations.load() - before) / static_cast<double>(state.iterations()),
      benchmark::Counter::kAvgThreads);
}

void BM_RawCall(benchmark::State& state) {
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  const long before = g_allocations.load();
  for (auto _ : state) {
    grpc::Status status = grpc::Status::OK;
    benchmark::DoNotOptimize(status);
    code = status.error_code();
    benchmark::DoNotOptimize(code);
  }
  ReportAllocations(state, before);
}
BENCHMARK(BM_RawCall)->ThreadRange(1, 2)->UseRealTime();

// Makes one call per iteration through `pipeline`, its breaker set up by `prepare` (by the
// first thread only: the others would move it while the first is timing).
void RunCalls(benchmark::State& state, Pipeline& pipeline, void (CircuitBreaker::*prepare)()) {
  if (state.thread_index() == 0) {
    (pipeline.targets->GetTarget("downstream").breaker().*prepare)();
  }
  const long before = g_allocations.load();
  for (auto _ : state) {
    InstantCall call(*pipeline.method);
    call.Start();
    benchmark::DoNotOptimize(call.last_code);
  }
  ReportAllocations(state, before);
}

void BM_PipelineSuccess(benchmark::State& state) {
  RunCalls(state, SharedPipeline(), &CircuitBreaker::Reset);
}
BENCHMARK(BM_PipelineSuccess)->ThreadRange(1, 2)->UseRealTime();

void BM_PipelineNoBulkhead(benchmark::State& state) {
  RunCalls(state, SharedPipelineWithoutBulkhead(), &CircuitBreaker::Reset);
}
BENCHMARK(BM_PipelineNoBulkhead)->ThreadRange(1, 2)->UseRealTime();

void BM_OpenBreakerRejection(benchmark::State& state) {
  RunCalls(state, SharedPipeline(), &CircuitBreaker::ForceOpen);
}
BENCHMARK(BM_OpenBreakerRejection)->ThreadRange(1, 2)->UseRealTime();

// The gRPC adapter around the pipeline, with a transport that answers at once: what a wrapped
// asynchronous call costs beyond a raw one, which BM_RawAsyncCall measures alone.
void BM_WrappedAsyncCall(benchmark::State& state) {
  Pipeline& pipeline = SharedPipeline();
  pipeline.targets->GetTarget("downstream").breaker().Reset();
  const UnarySender<echo::v1::EchoRequest, echo::v1::EchoResponse> sender =
      [](grpc::ClientContext*, const echo::v1::EchoRequest*, echo::v1::EchoResponse*,
         std::function<void(grpc::Status)> done) { done(grpc::Status::OK); };
  echo::v1::EchoRequest request;
  request.set_message("ping");
  int completed = 0;
  for (auto _ : state) {
    CallUnary<echo::v1::EchoRequest, echo::v1::EchoResponse>(
        *pipeline.method, sender, request, {},
        [&completed](const absl::Status&, echo::v1::EchoResponse&) { ++completed; });
  }
  benchmark::DoNotOptimize(completed);
}
BENCHMARK(BM_WrappedAsyncCall);

void BM_RawAsyncCall(benchmark::State& state) {
  struct RawCall {
    grpc::ClientContext context;
    echo::v1::EchoRequest request;
    echo::v1::EchoResponse response;
  };
  const std::function<void(grpc::ClientContext*, const echo::v1::EchoRequest*,
                           echo::v1::EchoResponse*, std::function<void(grpc::Status)>)>
      sender = [](grpc::ClientContext*, const echo::v1::EchoRequest*, echo::v1::EchoResponse*,
                  std::function<void(grpc::Status)> done) { done(grpc::Status::OK); };
  echo::v1::EchoRequest request;
  request.set_message("ping");
  int completed = 0;
  for (auto _ : state) {
    auto* call = new RawCall;
    call->request = request;
    call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    sender(&call->context, &call->request, &call->response, [call, &completed](grpc::Status) {
      delete call;
      ++completed;
    });
  }
  benchmark::DoNotOptimize(completed);
}
BENCHMARK(BM_RawAsyncCall);

}  // namespace
}  // namespace resilience

BENCHMARK_MAIN();
