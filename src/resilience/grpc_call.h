// gRPC unary calls through the resilience pipeline, asynchronous or blocking.
//
//   auto channel = resilience::CreateChannel("localhost:50052");
//   auto stub = hospital::morgue::v1::MorgueService::NewStub(channel);
//   resilience::GuardedMethod& admit = targets.GetTarget("morgue").Method(
//       "/hospital.morgue.v1.MorgueService/AdmitDeceased");
//   auto send = [stub = stub.get()](grpc::ClientContext* context, const AdmitRequest* request,
//                                   AdmitResponse* response,
//                                   std::function<void(grpc::Status)> done) {
//     stub->async()->AdmitDeceased(context, request, response, std::move(done));
//   };
//
//   // Asynchronous: `done` runs on a gRPC or scheduler thread; nothing blocks while waiting.
//   resilience::CallUnary<AdmitRequest, AdmitResponse>(admit, send, request, options,
//       [](const absl::Status& status, AdmitResponse& response) { ... });
//
//   // Blocking: waits on the calling thread.
//   AdmitResponse response;
//   absl::Status status = resilience::CallUnaryBlocking(admit, send, request, &response, options);
//
// Results come back as absl::Status with the gRPC code and message of the last attempt (or the
// pipeline's own: UNAVAILABLE from an open breaker, RESOURCE_EXHAUSTED from a full bulkhead,
// DEADLINE_EXCEEDED when the deadline was spent before an attempt could be sent); this file is the
// one place where the library meets grpc::Status.
//
// Each attempt gets a fresh grpc::ClientContext with the attempt's deadline and the options'
// metadata (so an idempotency key is the same on every attempt), a retry also
// grpc-previous-rpc-attempts (gRFC A6: the number of attempts before it), and the server's
// grpc-retry-pushback-ms trailer is honoured. A method whose policy has a hedgingPolicy is
// called through HedgedUnaryCall (hedged_call.h): a context and a response per attempt. A
// CallOptions::cancellation cancels the call: the attempt in flight with ClientContext::TryCancel,
// and no attempt after it.
#ifndef HOSPITAL_SRC_RESILIENCE_GRPC_CALL_H_
#define HOSPITAL_SRC_RESILIENCE_GRPC_CALL_H_

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/client_callback.h>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/grpc_status.h"
#include "base/sync.h"
#include "resilience/cancellation.h"
#include "resilience/endpoint_set.h"
#include "resilience/guarded_call.h"
#include "resilience/hedged_call.h"

namespace resilience {

// A channel for a target whose calls this library governs. gRPC's own retries are switched off
// (GRPC_ARG_ENABLE_RETRIES = 0) so that retries never multiply with ours. Unless `arguments`
// set them, reconnection backs off from 100 ms to at most kMaxReconnectBackoff instead of gRPC's
// 1 s to 120 s: the circuit breaker already decides when to stop calling a failing downstream,
// and with gRPC's schedule a restarted downstream stayed unreachable for seconds after it came
// back (the breaker's probes found the channel still waiting to reconnect). Other arguments in
// `arguments` are kept.
inline constexpr absl::Duration kMaxReconnectBackoff = absl::Seconds(1);
std::shared_ptr<grpc::Channel> CreateChannel(
    const std::string& address,
    std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials(),
    grpc::ChannelArguments arguments = {});

// Makes the breaker's half-open probes find `channel` connected. A channel whose downstream was
// gone waits between connection attempts (up to kMaxReconnectBackoff, or gRPC's 120 s on a
// channel made elsewhere) and fails calls at once while it waits, so the first probes after a
// restart would fail and reopen the breaker. Each time the breaker opens, a timer resets the
// channel's backoff shortly (kReconnectLead, or half the wait if shorter) before the wait ends,
// so the channel has tried again by the time the probes go. Call once per channel; the timer
// runs on `target`'s scheduler and keeps the channel alive until it fires.
void ReconnectBeforeProbes(Target& target, std::shared_ptr<grpc::Channel> channel);
inline constexpr absl::Duration kReconnectLead = absl::Milliseconds(50);

// The deadline of a request being served, for CallOptions::parent_deadline, on the scale of
// `clock` (the targets' clock: base::MonotonicClock() in a base::RealEnvironment).
absl::Time DeadlineOf(const grpc::ServerContextBase& context,
                      base::Clock& clock = base::MonotonicClock());

// The server's pushback, read from a finished attempt's trailing metadata.
Pushback PushbackOf(const grpc::ClientContext& context);

// The metadata key that tells the server how many attempts came before this one.
inline constexpr char kPreviousAttemptsMetadataKey[] = "grpc-previous-rpc-attempts";

struct CallOptions {
  // Deadline of the request being served; InfiniteFuture when the call is not made on behalf of
  // one.
  absl::Time parent_deadline = absl::InfiniteFuture();
  // Cancelled when the request being served is (its client went away): the call is cancelled
  // too. Null: none. Must outlive the call.
  Cancellation* cancellation = nullptr;
  // Sent with every attempt, e.g. {"idempotency-key", "..."}. Keys must be lower case.
  std::vector<std::pair<std::string, std::string>> metadata;
};

// Sends one attempt with gRPC's callback API, e.g. stub->async()->Method(...).
template <typename Request, typename Response>
using UnarySender = std::function<void(grpc::ClientContext*, const Request*, Response*,
                                       std::function<void(grpc::Status)>)>;

// Sends one attempt on `channel` (an endpoint's, chosen by an EndpointSet).
template <typename Request, typename Response>
using ChannelSender = std::function<void(grpc::Channel*, grpc::ClientContext*, const Request*,
                                         Response*, std::function<void(grpc::Status)>)>;

// The ChannelSender of the unary method `full_method` ("/package.Service/Method"), called as
// generated stubs call it (their callback API), on whichever channel the attempt was given.
// Copies of it share the name.
template <typename Request, typename Response>
ChannelSender<Request, Response> UnaryMethod(std::string full_method) {
  return [name = std::make_shared<const std::string>(std::move(full_method))](
             grpc::Channel* channel, grpc::ClientContext* context, const Request* request,
             Response* response, std::function<void(grpc::Status)> done) {
    grpc::internal::CallbackUnaryCall<Request, Response, grpc::protobuf::MessageLite,
                                      grpc::protobuf::MessageLite>(
        channel, grpc::internal::RpcMethod(name->c_str(), grpc::internal::RpcMethod::NORMAL_RPC),
        context, request, response, std::move(done));
  };
}

namespace internal {

// A ChannelSender that ignores the channel: `sender` has its own (a stub's).
template <typename Request, typename Response>
ChannelSender<Request, Response> OnOwnChannel(UnarySender<Request, Response> sender) {
  return [sender = std::move(sender)](grpc::Channel*, grpc::ClientContext* context,
                                      const Request* request, Response* response,
                                      std::function<void(grpc::Status)> done) {
    sender(context, request, response, std::move(done));
  };
}

// Where a call's attempts go when its target has an EndpointSet: each to an endpoint the call
// has not tried yet (while there is one), each result reported to the balancer. Not
// thread-safe; a hedged call holds its own lock around it.
class EndpointRoute {
 public:
  explicit EndpointRoute(EndpointSet* endpoints) : endpoints_(endpoints) {}
  bool active() const { return endpoints_ != nullptr; }
  // Picks attempt `index`'s endpoint; the channel is null if the target has none.
  std::shared_ptr<grpc::Channel> Pick(int index) {
    std::vector<const EndpointBalancer::Endpoint*> avoid;
    for (const EndpointBalancer::Attempt& tried : attempts_) avoid.push_back(tried.endpoint.get());
    EndpointSet::Choice choice = endpoints_->Pick(avoid);
    if (static_cast<std::size_t>(index) >= attempts_.size()) attempts_.resize(index + 1);
    attempts_[index] = std::move(choice.attempt);
    return std::move(choice.channel);
  }
  void Finish(int index, absl::StatusCode code, bool cut_by_caller) {
    endpoints_->Finish(attempts_[index], code, cut_by_caller);
  }

 private:
  EndpointSet* const endpoints_;
  std::vector<EndpointBalancer::Attempt> attempts_;
};

inline absl::Status NoEndpointStatus(const GuardedMethod& method) {
  return absl::UnavailableError(
      absl::StrCat("target \"", method.target().name(), "\" has no endpoint to call"));
}

}  // namespace internal

// Sets up an attempt's fresh context: its deadline `remaining` from now (converted through the
// remaining time, so the pipeline may run on any Clock), the options' metadata and, after the
// first attempt, grpc-previous-rpc-attempts.
void PrepareAttemptContext(grpc::ClientContext& context, absl::Duration remaining,
                           const CallOptions& options, int previous_attempts);

// Registers a self-owned call with `cancellation` (if any) through a weak reference, so that a
// cancel never races the call's destruction. Returns the registration's id (0: none).
template <typename Call>
Cancellation::Id CancelThroughWeakReference(Cancellation* cancellation,
                                            const std::shared_ptr<Call>& call) {
  if (cancellation == nullptr) return 0;
  return cancellation->Register([weak = std::weak_ptr<Call>(call)] {
    if (std::shared_ptr<Call> alive = weak.lock()) alive->Cancel();
  });
}

// A gRPC unary call as a GuardedCall. CallUnary and CallUnaryBlocking cover the usual needs.
template <typename Request, typename Response>
class UnaryCall final : public GuardedCall {
 public:
  using Done = absl::AnyInvocable<void(const absl::Status&, Response&)>;

  UnaryCall(GuardedMethod& method, UnarySender<Request, Response> sender, Request request,
            CallOptions options, Done done)
      : UnaryCall(method, nullptr, internal::OnOwnChannel(std::move(sender)), std::move(request),
                  std::move(options), std::move(done)) {}
  // Each attempt on an endpoint of `endpoints` (null: `sender` brings its own channel).
  UnaryCall(GuardedMethod& method, EndpointSet* endpoints, ChannelSender<Request, Response> sender,
            Request request, CallOptions options, Done done)
      : GuardedCall(method),
        method_(method),
        route_(endpoints),
        sender_(std::move(sender)),
        request_(std::move(request)),
        options_(std::move(options)),
        done_(std::move(done)) {}

  // Starts a call that owns itself (held by `self`) until it is done; a cancellation in the
  // options reaches it through a weak reference, so the two never race its destruction.
  static void RunOwned(std::shared_ptr<UnaryCall> self) {
    UnaryCall& call = *self;
    call.self_ = std::move(self);
    call.cancellation_id_ = CancelThroughWeakReference(call.options_.cancellation, call.self_);
    call.Start(call.options_.parent_deadline);
  }

  // Starts a call owned by the caller, which must keep it alive until `done` has run.
  void Run() { Start(options_.parent_deadline); }

 private:
  void StartAttempt(absl::Time attempt_deadline) override {
    grpc::ClientContext* context;
    {
      base::MutexLock lock(&context_mutex_);
      context = &context_.emplace();
    }
    // Cancel may have looked for a context just before this one existed.
    if (cancel_requested()) context->TryCancel();
    PrepareAttemptContext(*context, attempt_deadline - attempt_start(), options_, attempts() - 1);
    response_.Clear();
    const int index = attempts() - 1;
    if (route_.active()) {
      // Attempts follow one another: the route is never touched by two at once.
      channel_ = route_.Pick(index);
      if (channel_ == nullptr) {
        FinishAttempt(internal::NoEndpointStatus(method_));
        return;
      }
    }
    sender_(channel_.get(), context, &request_, &response_,
            [this, context, index](grpc::Status status) {
              if (route_.active()) {
                route_.Finish(
                    index, static_cast<absl::StatusCode>(status.error_code()),
                    !status.ok() && CutByCaller(static_cast<absl::StatusCode>(status.error_code()),
                                                clock().Now()));
              }
              // Pushback only matters to a failed attempt; a success skips the metadata lookup.
              const Pushback pushback = status.ok() ? Pushback{} : PushbackOf(*context);
              FinishAttempt(base::FromGrpcStatus(status), pushback);
            });
  }

  void CancelAttempt() override {
    // Under the lock, so that the context is not replaced meanwhile. gRPC may finish the
    // attempt inside TryCancel, on this thread; nothing on that path takes this lock (a retry
    // is always started by the scheduler), and a self-owned call is kept alive by the
    // cancellation's reference until this returns.
    base::MutexLock lock(&context_mutex_);
    if (context_) context_->TryCancel();
  }

  void OnDone(const absl::Status& status) override {
    if (options_.cancellation != nullptr) options_.cancellation->Unregister(cancellation_id_);
    if (self_ == nullptr) {
      done_(status, response_);
      return;
    }
    // The call (its ClientContext and gRPC call) is freed before the continuation runs, which
    // often starts the next call. `status` never points into this object.
    Done done = std::move(done_);
    Response response = std::move(response_);
    self_.reset();  // May destroy this object.
    done(status, response);
  }

  GuardedMethod& method_;
  internal::EndpointRoute route_;
  std::shared_ptr<grpc::Channel> channel_;  // The attempt's endpoint's, while routed.
  ChannelSender<Request, Response> sender_;
  const Request request_;
  const CallOptions options_;
  Done done_;
  Response response_;
  base::Mutex context_mutex_;
  std::optional<grpc::ClientContext> context_ ABSL_GUARDED_BY(context_mutex_);
  std::shared_ptr<UnaryCall> self_;  // Set while a self-owned call runs.
  Cancellation::Id cancellation_id_ = 0;
};

// A gRPC unary call of a hedged method as a HedgedCall: each attempt has its own
// grpc::ClientContext and response; the winner's response is the call's. CallUnary and
// CallUnaryBlocking choose it for a method whose policy has a hedgingPolicy.
template <typename Request, typename Response>
class HedgedUnaryCall final : public HedgedCall {
 public:
  using Done = typename UnaryCall<Request, Response>::Done;

  HedgedUnaryCall(GuardedMethod& method, UnarySender<Request, Response> sender, Request request,
                  CallOptions options, Done done)
      : HedgedUnaryCall(method, nullptr, internal::OnOwnChannel(std::move(sender)),
                        std::move(request), std::move(options), std::move(done)) {}
  // Each attempt on an endpoint of `endpoints` (null: `sender` brings its own channel): a
  // hedge goes to another endpoint than the attempts before it, while there is one.
  HedgedUnaryCall(GuardedMethod& method, EndpointSet* endpoints,
                  ChannelSender<Request, Response> sender, Request request, CallOptions options,
                  Done done)
      : HedgedCall(method),
        method_(method),
        routed_(endpoints != nullptr),
        sender_(std::move(sender)),
        request_(std::move(request)),
        options_(std::move(options)),
        done_(std::move(done)),
        route_(endpoints) {}

  // As UnaryCall::RunOwned: the call owns itself until its last attempt has ended (after
  // `done`, which does not wait for the losers' cancellation).
  static void RunOwned(std::shared_ptr<HedgedUnaryCall> self) {
    HedgedUnaryCall& call = *self;
    call.self_ = std::move(self);
    call.cancellation_id_ = CancelThroughWeakReference(call.options_.cancellation, call.self_);
    call.Start(call.options_.parent_deadline);
  }

  // Starts a call owned by the caller, which must keep it alive until `ended` has run (after
  // `done`, once every attempt has ended).
  void Run(absl::AnyInvocable<void()> ended) {
    ended_ = std::move(ended);
    Start(options_.parent_deadline);
  }

 private:
  void StartAttempt(int index, absl::Time attempt_deadline) override {
    grpc::ClientContext* context;
    bool cancel;
    {
      base::MutexLock lock(&contexts_mutex_);
      context = &contexts_[index].emplace();
      cancel = cancel_before_start_[index];
    }
    if (cancel || cancel_requested()) context->TryCancel();
    // gRFC A6: hedges carry the number of attempts sent before them too (`index`).
    PrepareAttemptContext(*context, attempt_deadline - clock().Now(), options_, index);
    std::shared_ptr<grpc::Channel> channel;
    if (routed_) {
      {
        base::MutexLock lock(&contexts_mutex_);
        channel = channels_[index] = route_.Pick(index);
      }
      if (channel == nullptr) {
        FinishAttempt(index, internal::NoEndpointStatus(method_));
        return;
      }
    }
    sender_(channel.get(), context, &request_, &responses_[index],
            [this, index, context](grpc::Status status) {
              if (routed_) {
                const auto code = static_cast<absl::StatusCode>(status.error_code());
                const bool cut = !status.ok() && CutByCaller(index, code);
                base::MutexLock lock(&contexts_mutex_);
                route_.Finish(index, code, cut);
              }
              const Pushback pushback = status.ok() ? Pushback{} : PushbackOf(*context);
              FinishAttempt(index, base::FromGrpcStatus(status), pushback);
            });
  }

  void CancelAttempt(int index) override {
    grpc::ClientContext* context = nullptr;
    {
      base::MutexLock lock(&contexts_mutex_);
      if (contexts_[index]) {
        context = &*contexts_[index];
      } else {
        cancel_before_start_[index] = true;  // StartAttempt has not made it yet.
      }
    }
    // Outside the lock: gRPC may end the attempt inside TryCancel, on this thread, and that can
    // start or cancel another attempt. A context is never replaced, so the pointer stays valid.
    if (context != nullptr) context->TryCancel();
  }

  void OnDone(const absl::Status& status, int winner) override {
    if (options_.cancellation != nullptr) options_.cancellation->Unregister(cancellation_id_);
    Response none;
    done_(status, winner >= 0 ? responses_[winner] : none);
  }

  void OnEnded() override {
    if (self_ == nullptr) {
      absl::AnyInvocable<void()> ended = std::move(ended_);
      ended();  // May destroy this object.
      return;
    }
    self_.reset();  // May destroy this object.
  }

  GuardedMethod& method_;
  const bool routed_;  // Attempts go through route_.
  ChannelSender<Request, Response> sender_;
  const Request request_;
  const CallOptions options_;
  Done done_;
  absl::AnyInvocable<void()> ended_;
  std::array<Response, HedgedCall::kMaxAttempts> responses_;
  base::Mutex contexts_mutex_;
  std::array<std::optional<grpc::ClientContext>, HedgedCall::kMaxAttempts> contexts_
      ABSL_GUARDED_BY(contexts_mutex_);
  std::array<bool, HedgedCall::kMaxAttempts> cancel_before_start_
      ABSL_GUARDED_BY(contexts_mutex_) = {};
  internal::EndpointRoute route_ ABSL_GUARDED_BY(contexts_mutex_);
  std::array<std::shared_ptr<grpc::Channel>, HedgedCall::kMaxAttempts> channels_
      ABSL_GUARDED_BY(contexts_mutex_);
  std::shared_ptr<HedgedUnaryCall> self_;  // Set while a self-owned call runs.
  Cancellation::Id cancellation_id_ = 0;
};

// Makes a call without blocking; `done` gets the status and the response of the last attempt.
template <typename Request, typename Response>
void CallUnary(GuardedMethod& method, UnarySender<Request, Response> sender, Request request,
               CallOptions options, typename UnaryCall<Request, Response>::Done done) {
  if (method.policy().hedging.enabled()) {
    HedgedUnaryCall<Request, Response>::RunOwned(
        std::make_shared<HedgedUnaryCall<Request, Response>>(
            method, std::move(sender), std::move(request), std::move(options), std::move(done)));
    return;
  }
  UnaryCall<Request, Response>::RunOwned(std::make_shared<UnaryCall<Request, Response>>(
      method, std::move(sender), std::move(request), std::move(options), std::move(done)));
}

// As above, each attempt on an endpoint of `endpoints` (endpoint_set.h), sent with `sender`
// (UnaryMethod<Request, Response>("/package.Service/Method") for a plain unary method).
template <typename Request, typename Response>
void CallUnary(GuardedMethod& method, EndpointSet& endpoints,
               ChannelSender<Request, Response> sender, Request request, CallOptions options,
               typename UnaryCall<Request, Response>::Done done) {
  if (method.policy().hedging.enabled()) {
    HedgedUnaryCall<Request, Response>::RunOwned(
        std::make_shared<HedgedUnaryCall<Request, Response>>(method, &endpoints, std::move(sender),
                                                             std::move(request), std::move(options),
                                                             std::move(done)));
    return;
  }
  UnaryCall<Request, Response>::RunOwned(std::make_shared<UnaryCall<Request, Response>>(
      method, &endpoints, std::move(sender), std::move(request), std::move(options),
      std::move(done)));
}

// Makes a call and waits for it on the calling thread.
template <typename Request, typename Response>
absl::Status CallUnaryBlocking(GuardedMethod& method, UnarySender<Request, Response> sender,
                               const Request& request, Response* response,
                               CallOptions options = {}) {
  absl::Status result;
  base::Notification finished;
  Cancellation* const cancellation = options.cancellation;
  if (method.policy().hedging.enabled()) {
    HedgedUnaryCall<Request, Response> call(method, std::move(sender), request, std::move(options),
                                            [&](const absl::Status& status, Response& winner) {
                                              result = status;
                                              *response = std::move(winner);
                                            });
    Cancellation::Id id = 0;
    if (cancellation != nullptr) id = cancellation->Register([&call] { call.Cancel(); });
    call.Run([&finished] { finished.Notify(); });
    finished.WaitForNotification();  // The result, and every loser ended.
    if (cancellation != nullptr) cancellation->Unregister(id);
    return result;
  }
  UnaryCall<Request, Response> call(method, std::move(sender), request, std::move(options),
                                    [&](const absl::Status& status, Response& last) {
                                      result = status;
                                      *response = std::move(last);
                                      finished.Notify();
                                    });
  // Unregistered after the wait: Unregister waits for a Cancel running on another thread, so
  // nothing touches `call` once this function returns.
  Cancellation::Id id = 0;
  if (cancellation != nullptr) id = cancellation->Register([&call] { call.Cancel(); });
  call.Run();
  finished.WaitForNotification();
  if (cancellation != nullptr) cancellation->Unregister(id);
  return result;
}

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_GRPC_CALL_H_
