// How the benchmark sends its load: open-loop asynchronous calls, each recorded as a CallSample
// (run.h) from the callback thread that completes it.
#ifndef HOSPITAL_BENCH_FAULT_BENCH_LOAD_H_
#define HOSPITAL_BENCH_FAULT_BENCH_LOAD_H_

#include <utility>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/sync.h"
#include "fault_bench/run.h"

namespace fault_bench {

// Records calls made by callback threads.
class Recorder {
 public:
  void Add(std::vector<CallSample>& into, CallSample sample) {
    base::MutexLock lock(&mutex_);
    into.push_back(sample);
    --outstanding_;
    done_.SignalAll();
  }
  void Started() {
    base::MutexLock lock(&mutex_);
    ++outstanding_;
  }
  void WaitForAll() {
    base::MutexLock lock(&mutex_);
    while (outstanding_ > 0) done_.Wait(&mutex_);
  }

 private:
  base::Mutex mutex_;
  base::CondVar done_;
  int outstanding_ ABSL_GUARDED_BY(mutex_) = 0;
};

// Sends one unary call asynchronously. `method` forwards its four arguments to a stub's async
// method; `done(status, request, context)` runs on a gRPC thread when the call ends.
template <typename Response, typename Request, typename Method, typename Done>
void CallAsync(Method method, Request request, absl::Time deadline, Done done) {
  struct Call {
    grpc::ClientContext context;
    Request request;
    Response response;
  };
  auto* call = new Call;
  call->context.set_deadline(absl::ToChronoTime(deadline));
  call->request = std::move(request);
  method(&call->context, &call->request, &call->response, [call, done](grpc::Status status) {
    done(status, call->request, call->context);
    delete call;
  });
}

inline void SleepUntil(absl::Time when) {
  const absl::Duration wait = when - absl::Now();
  if (wait > absl::ZeroDuration()) absl::SleepFor(wait);
}

}  // namespace fault_bench

#endif  // HOSPITAL_BENCH_FAULT_BENCH_LOAD_H_
