#include "resilience/grpc_call.h"

#include <algorithm>
#include <cstring>

#include <grpc/grpc.h>
#include <grpcpp/create_channel.h>

namespace resilience {

std::shared_ptr<grpc::Channel> CreateChannel(const std::string& address,
                                             std::shared_ptr<grpc::ChannelCredentials> credentials,
                                             grpc::ChannelArguments arguments) {
  const auto is_set = [&arguments](const char* key) {
    // c_channel_args() points into `arguments`: read it before any Set call.
    const grpc_channel_args given = arguments.c_channel_args();
    for (std::size_t i = 0; i < given.num_args; ++i) {
      if (std::strcmp(given.args[i].key, key) == 0) return true;
    }
    return false;
  };
  const bool initial_backoff_set = is_set(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS);
  const bool max_backoff_set = is_set(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS);
  arguments.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  if (!initial_backoff_set) arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  if (!max_backoff_set) {
    arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                     static_cast<int>(absl::ToInt64Milliseconds(kMaxReconnectBackoff)));
  }
  return grpc::CreateCustomChannel(address, credentials, arguments);
}

void ReconnectBeforeProbes(Target& target, std::shared_ptr<grpc::Channel> channel) {
  base::Environment environment = target.environment();
  target.AddStateListener([&target, environment, channel = std::move(channel)](BreakerState,
                                                                               BreakerState to) {
    if (to != BreakerState::kOpen) return;
    const absl::Time now = environment.clock->Now();
    const absl::Time open_until = target.breaker().Snapshot().open_until;
    const absl::Time reset_at = open_until - std::min(kReconnectLead, (open_until - now) / 2);
    environment.scheduler->RunAt(
        reset_at, [channel] { grpc::experimental::ChannelResetConnectionBackoff(channel.get()); });
  });
}

absl::Time DeadlineOf(const grpc::ServerContextBase& context, base::Clock& clock) {
  return base::ToClockTime(context.deadline(), clock);
}

void PrepareAttemptContext(grpc::ClientContext& context, absl::Duration remaining,
                           const CallOptions& options, int previous_attempts) {
  if (remaining < absl::InfiniteDuration()) {
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoNanoseconds(std::max(remaining, absl::ZeroDuration())));
  }
  for (const auto& [key, value] : options.metadata) context.AddMetadata(key, value);
  if (previous_attempts > 0) {
    context.AddMetadata(kPreviousAttemptsMetadataKey, std::to_string(previous_attempts));
  }
}

Pushback PushbackOf(const grpc::ClientContext& context) {
  const auto& trailers = context.GetServerTrailingMetadata();
  const auto it =
      trailers.find(grpc::string_ref(kPushbackMetadataKey.data(), kPushbackMetadataKey.size()));
  if (it == trailers.end()) return {};
  return ParsePushback(std::string_view(it->second.data(), it->second.size()));
}

}  // namespace resilience
