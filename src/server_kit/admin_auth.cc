#include "server_kit/admin_auth.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <grpcpp/security/auth_context.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace server_kit {

AdminAuthenticator::AdminAuthenticator(AdminCredentials credentials, prometheus::Registry& metrics)
    : credentials_(std::move(credentials)),
      refusals_(prometheus::BuildCounter()
                    .Name("hospital_admin_refusals_total")
                    .Help("Changes asked of the admin listener and refused for want of "
                          "credentials (no token, a wrong token, no operator certificate).")
                    .Register(metrics)) {}

absl::StatusOr<std::string> AdminAuthenticator::Authenticate(const grpc::ServerContext& context,
                                                             absl::string_view method) const {
  absl::StatusOr<std::string> identity = Check(context);
  if (!identity.ok()) refusals_.Add({{"method", std::string(method)}}).Increment();
  return identity;
}

absl::StatusOr<std::string> AdminAuthenticator::Check(const grpc::ServerContext& context) const {
  if (credentials_.trust_client_certificates) {
    const std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
    if (auth != nullptr && auth->IsPeerAuthenticated()) {
      std::vector<std::string> names;
      for (const grpc::string_ref& name : auth->GetPeerIdentity()) {
        names.emplace_back(name.data(), name.size());
      }
      return absl::StrCat("certificate ", absl::StrJoin(names, ","));
    }
  }
  if (credentials_.token.empty()) {
    return absl::UnauthenticatedError(
        credentials_.trust_client_certificates
            ? "admin: present a client certificate signed by the operator CA"
            : "admin: changes are refused: this service has no admin credentials (start it with "
              "--admin_token_file, or --admin_tls_ca for operator certificates)");
  }
  const auto& metadata = context.client_metadata();
  const auto header = metadata.find("authorization");
  static constexpr absl::string_view kBearer = "Bearer ";
  if (header == metadata.end()) {
    return absl::UnauthenticatedError(
        "authorization: missing; send \"authorization: Bearer <token>\"");
  }
  const absl::string_view value(header->second.data(), header->second.size());
  if (!absl::StartsWith(value, kBearer) ||
      !ConstantTimeEquals(value.substr(kBearer.size()), credentials_.token)) {
    return absl::UnauthenticatedError("authorization: wrong token");
  }
  // The token proves the caller knows it; who they are is not known beyond that.
  return std::string("bearer token");
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path, absl::string_view flag) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  std::string token(absl::StripAsciiWhitespace(text.str()));
  if (!file || token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read a token from \"", path, "\""));
  }
  return token;
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  // Every byte of the longer input is visited whatever the contents, so the time taken says
  // nothing about where the first difference is.
  const std::size_t length = std::max(a.size(), b.size());
  unsigned char difference = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < length; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    difference = static_cast<unsigned char>(difference | (x ^ y));
  }
  return difference == 0;
}

}  // namespace server_kit
