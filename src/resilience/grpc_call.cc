#include "resilience/grpc_call.h"

#include <grpc/grpc.h>
#include <grpcpp/create_channel.h>

namespace resilience {

std::shared_ptr<grpc::Channel> CreateChannel(const std::string& address,
                                             std::shared_ptr<grpc::ChannelCredentials> credentials,
                                             grpc::ChannelArguments arguments) {
  arguments.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  return grpc::CreateCustomChannel(address, credentials, arguments);
}

absl::Time DeadlineOf(const grpc::ServerContextBase& context) {
  const auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

Pushback PushbackOf(const grpc::ClientContext& context) {
  const auto& trailers = context.GetServerTrailingMetadata();
  const auto it =
      trailers.find(grpc::string_ref(kPushbackMetadataKey.data(), kPushbackMetadataKey.size()));
  if (it == trailers.end()) return {};
  return ParsePushback(std::string_view(it->second.data(), it->second.size()));
}

}  // namespace resilience
