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
// metadata (so an idempotency key is the same on every attempt), and the server's
// grpc-retry-pushback-ms trailer is honoured.
#ifndef HOSPITAL_SRC_RESILIENCE_GRPC_CALL_H_
#define HOSPITAL_SRC_RESILIENCE_GRPC_CALL_H_

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "base/grpc_status.h"
#include "base/sync.h"
#include "resilience/guarded_call.h"

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

// The deadline of a request being served, for CallOptions::parent_deadline.
absl::Time DeadlineOf(const grpc::ServerContextBase& context);

// The server's pushback, read from a finished attempt's trailing metadata.
Pushback PushbackOf(const grpc::ClientContext& context);

struct CallOptions {
  // Deadline of the request being served; InfiniteFuture when the call is not made on behalf of
  // one.
  absl::Time parent_deadline = absl::InfiniteFuture();
  // Sent with every attempt, e.g. {"idempotency-key", "..."}. Keys must be lower case.
  std::vector<std::pair<std::string, std::string>> metadata;
};

// Sends one attempt with gRPC's callback API, e.g. stub->async()->Method(...).
template <typename Request, typename Response>
using UnarySender = std::function<void(grpc::ClientContext*, const Request*, Response*,
                                       std::function<void(grpc::Status)>)>;

// A gRPC unary call as a GuardedCall. CallUnary and CallUnaryBlocking cover the usual needs.
template <typename Request, typename Response>
class UnaryCall final : public GuardedCall {
 public:
  using Done = absl::AnyInvocable<void(const absl::Status&, Response&)>;

  // With `delete_when_done`, the object was made with new and deletes itself after `done`.
  UnaryCall(GuardedMethod& method, UnarySender<Request, Response> sender, Request request,
            CallOptions options, Done done, bool delete_when_done)
      : GuardedCall(method),
        sender_(std::move(sender)),
        request_(std::move(request)),
        options_(std::move(options)),
        done_(std::move(done)),
        delete_when_done_(delete_when_done) {}

  void Run() { Start(options_.parent_deadline); }

 private:
  void StartAttempt(absl::Time attempt_deadline) override {
    context_.emplace();
    // Converted through the remaining time, so the pipeline may run on any Clock.
    const absl::Duration remaining = attempt_deadline - attempt_start();
    if (remaining < absl::InfiniteDuration()) {
      context_->set_deadline(std::chrono::system_clock::now() +
                             absl::ToChronoNanoseconds(std::max(remaining, absl::ZeroDuration())));
    }
    for (const auto& [key, value] : options_.metadata) context_->AddMetadata(key, value);
    response_.Clear();
    sender_(&*context_, &request_, &response_, [this](grpc::Status status) {
      // Pushback only matters to a failed attempt; a success skips the metadata lookup.
      const Pushback pushback = status.ok() ? Pushback{} : PushbackOf(*context_);
      FinishAttempt(base::FromGrpcStatus(status), pushback);
    });
  }

  void OnDone(const absl::Status& status) override {
    if (!delete_when_done_) {
      done_(status, response_);
      return;
    }
    // The call (its ClientContext and gRPC call) is freed before the continuation runs, which
    // often starts the next call. `status` never points into this object.
    Done done = std::move(done_);
    Response response = std::move(response_);
    delete this;
    done(status, response);
  }

  UnarySender<Request, Response> sender_;
  const Request request_;
  const CallOptions options_;
  Done done_;
  const bool delete_when_done_;
  Response response_;
  std::optional<grpc::ClientContext> context_;
};

// Makes a call without blocking; `done` gets the status and the response of the last attempt.
template <typename Request, typename Response>
void CallUnary(GuardedMethod& method, UnarySender<Request, Response> sender, Request request,
               CallOptions options, typename UnaryCall<Request, Response>::Done done) {
  (new UnaryCall<Request, Response>(method, std::move(sender), std::move(request),
                                    std::move(options), std::move(done),
                                    /*delete_when_done=*/true))
      ->Run();
}

// Makes a call and waits for it on the calling thread.
template <typename Request, typename Response>
absl::Status CallUnaryBlocking(GuardedMethod& method, UnarySender<Request, Response> sender,
                               const Request& request, Response* response,
                               CallOptions options = {}) {
  absl::Status result;
  base::Notification finished;
  UnaryCall<Request, Response> call(
      method, std::move(sender), request, std::move(options),
      [&](const absl::Status& status, Response& last) {
        result = status;
        *response = std::move(last);
        finished.Notify();
      },
      /*delete_when_done=*/false);
  call.Run();
  finished.WaitForNotification();
  return result;
}

}  // namespace resilience

#endif  // HOSPITAL_SRC_RESILIENCE_GRPC_CALL_H_
