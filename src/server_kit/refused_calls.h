// Explains, counts and paces the unary calls that gRPC's synchronous server answers itself,
// before any handler runs.
//
// In each of these cases the server hands interceptors no request message, so the absence of a
// message alone says nothing about why; what gRPC is about to send says it:
//
//   reason             gRPC would send                        the caller gets instead
//   threads_exhausted  RESOURCE_EXHAUSTED "Server Threadpool   RESOURCE_EXHAUSTED saying the server
//                      Exhausted": no thread was free for it   was busy, with the trailer
//                      within the listener's bound             grpc-retry-pushback-ms: retry then
//   unparsable         INTERNAL with the parser's message      INVALID_ARGUMENT naming the request
//                      (empty for proto3): the bytes are not   type: the client is at fault, a
//                      a valid request (a string field that    retry cannot help
//                      is not UTF-8, most often)
//   no_message         INTERNAL "No payload" or "Couldn't      UNAVAILABLE: the stream ended before
//                      initialize byte buffer reader": no      its message, which a retry may
//                      message arrived at all                  deliver
//   other              anything else                          what gRPC sends, unchanged
//
// In every case the handler never ran, so nothing changed; each refusal is counted in
// hospital_rpc_refusals_total{listener, reason} (every reason present from the start, at 0).
//
// The pushback is drawn uniformly from [pushback / 2, 3 * pushback / 2) for each refusal: a
// client honouring it (resilience::GuardedCall does) waits exactly that long, and callers refused
// together by one burst must not come back together.
//
// Thread-safe; the factory must outlive the server it is given to.
#ifndef HOSPITAL_SRC_SERVER_KIT_REFUSED_CALLS_H_
#define HOSPITAL_SRC_SERVER_KIT_REFUSED_CALLS_H_

#include <string>

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>

#include "absl/time/time.h"
#include "base/clock.h"

namespace server_kit {

struct RefusedCallOptions {
  // The listener's name for the metric's label ("public", "admin", "health").
  std::string listener;
  // The listener's thread bound, named in the busy answer.
  int max_threads = 0;
  // The mean delay asked of a caller refused for lack of threads; positive.
  absl::Duration pushback = absl::Milliseconds(50);
};

class RefusedCallInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `refusals` is hospital_rpc_refusals_total (RefusalsFamily); it and `random` must outlive
  // the factory.
  RefusedCallInterceptorFactory(RefusedCallOptions options,
                                prometheus::Family<prometheus::Counter>& refusals,
                                base::RandomSource& random);

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

  // For the interceptor: the answer to a call that arrived without a request message, given what
  // gRPC was about to send; counts the refusal. Sets `pushback_ms` (else leaves it empty) when
  // the caller should be told when to retry.
  grpc::Status Explain(const grpc::Status& original, const char* full_method,
                       std::string& pushback_ms);

 private:
  const RefusedCallOptions options_;
  base::RandomSource& random_;
  prometheus::Counter& threads_exhausted_;
  prometheus::Counter& unparsable_;
  prometheus::Counter& no_message_;
  prometheus::Counter& other_;
};

// Registers hospital_rpc_refusals_total in `registry` (once per registry: listeners share it).
prometheus::Family<prometheus::Counter>& RefusalsFamily(prometheus::Registry& registry);

}  // namespace server_kit

#endif  // HOSPITAL_SRC_SERVER_KIT_REFUSED_CALLS_H_
