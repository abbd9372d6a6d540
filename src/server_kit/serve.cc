#include "server_kit/serve.h"

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace server_kit {

namespace {

std::optional<absl::Status> MarkedStatus(const grpc::ServerContext& context, std::string_view key) {
  const auto& metadata = context.client_metadata();
  const auto found = metadata.find(grpc::string_ref(key.data(), key.size()));
  if (found == metadata.end()) return std::nullopt;
  const absl::string_view value(found->second.data(), found->second.size());
  const std::size_t space = value.find(' ');
  int code = 0;
  if (space == absl::string_view::npos || !absl::SimpleAtoi(value.substr(0, space), &code) ||
      code <= 0 || code > 16) {
    return absl::InternalError("call refused (unreadable mark)");
  }
  return absl::Status(static_cast<absl::StatusCode>(code), value.substr(space + 1));
}

}  // namespace

std::optional<absl::Status> AccessDenied(const grpc::ServerContext& context) {
  return MarkedStatus(context, kAccessDeniedKey);
}

std::optional<absl::Status> InjectedFault(const grpc::ServerContext& context) {
  return MarkedStatus(context, kInjectedFaultKey);
}

namespace {
constexpr absl::string_view kReasonPayloadUrl = "type.hospital/error-reason";
}  // namespace

absl::Status WithErrorReason(absl::Status status, std::string_view reason) {
  status.SetPayload(kReasonPayloadUrl, absl::Cord(absl::string_view(reason.data(), reason.size())));
  return status;
}

std::string ErrorReasonOf(const absl::Status& status) {
  const absl::optional<absl::Cord> reason = status.GetPayload(kReasonPayloadUrl);
  return reason ? std::string(*reason) : std::string();
}

std::string ErrorReasonOf(const grpc::ClientContext& context) {
  const auto& trailers = context.GetServerTrailingMetadata();
  const auto found =
      trailers.find(grpc::string_ref(kErrorReasonKey.data(), kErrorReasonKey.size()));
  return found == trailers.end() ? std::string()
                                 : std::string(found->second.data(), found->second.size());
}

std::string EncodeMarkedStatus(const absl::Status& status) {
  return absl::StrCat(static_cast<int>(status.code()), " ", status.message());
}

}  // namespace server_kit
