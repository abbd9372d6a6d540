#include "server_kit/caller_authorization.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>

#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/auth_context.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/grpc_status.h"
#include "base/method_name.h"
#include "hospital/security/v1/caller_policy.pb.h"
#include "server_kit/serve.h"

namespace server_kit {
namespace {

bool IsIdentifier(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
  });
}

// Whether `pattern` ("package.Service/Method" or "package.Service/*") covers `call`.
bool Covers(const std::string& pattern, const base::MethodName& call) {
  const std::optional<base::MethodName> rule = base::ParseMethodName(pattern);
  return rule && rule->service == call.service &&
         (rule->method == "*" || rule->method == call.method);
}

class CallerAuthorizationInterceptor final : public grpc::experimental::Interceptor {
 public:
  CallerAuthorizationInterceptor(CallerAuthorizationFactory& factory,
                                 grpc::experimental::ServerRpcInfo* info)
      : factory_(factory), info_(info) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      auto& metadata = *methods->GetRecvInitialMetadata();
      // Only this interceptor marks calls: drop whatever a client sent under the key.
      metadata.erase(grpc::string_ref(kAccessDeniedKey.data(), kAccessDeniedKey.size()));
      absl::Status decision = factory_.Decide(info_->method(), *info_->server_context());
      if (!decision.ok()) {
        mark_ = EncodeMarkedStatus(decision);
        denied_ = std::move(decision);
        // The map holds references: the string lives in this interceptor, as long as the call.
        metadata.emplace(grpc::string_ref(kAccessDeniedKey.data(), kAccessDeniedKey.size()),
                         grpc::string_ref(mark_.data(), mark_.size()));
      }
    }
    // A denied caller hears PERMISSION_DENIED even for a call gRPC refused for lack of threads
    // (refused_calls.h): the denial is final and true either way, and a retry would only be
    // denied.
    if (denied_ && methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      methods->ModifySendStatus(base::ToGrpcStatus(*denied_));
    }
    methods->Proceed();
  }

 private:
  CallerAuthorizationFactory& factory_;
  grpc::experimental::ServerRpcInfo* const info_;
  std::optional<absl::Status> denied_;
  std::string mark_;
};

}  // namespace

absl::StatusOr<CallerPolicy> CallerPolicy::FromJson(absl::string_view json) {
  hospital::security::v1::CallerPolicy message;
  const auto parsed = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &message);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a valid caller policy: ", parsed.message().as_string()));
  }
  CallerPolicy policy;
  for (int i = 0; i < message.rules_size(); ++i) {
    const auto& rule = message.rules(i);
    if (rule.methods().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("rules[", i, "].methods: name at least one"));
    }
    if (rule.callers().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rules[", i,
          "].callers: name at least one (a method nobody may call is better removed)"));
    }
    Rule checked;
    for (int j = 0; j < rule.methods_size(); ++j) {
      const std::string& method = rule.methods(j);
      const std::optional<base::MethodName> name = base::ParseMethodName(method);
      if (method.empty() || method.front() == '/' || !name || !IsIdentifier(name->service) ||
          (name->method != "*" && !IsIdentifier(name->method))) {
        return absl::InvalidArgumentError(
            absl::StrCat("rules[", i, "].methods[", j,
                         "]: must be \"package.Service/Method\" or \"package.Service/*\", got \"",
                         method, "\""));
      }
      checked.methods.push_back(method);
    }
    for (int j = 0; j < rule.callers_size(); ++j) {
      const std::string& caller = rule.callers(j);
      const std::size_t colon = caller.find(':');
      if (colon == std::string::npos || colon == 0 || colon + 1 == caller.size() ||
          absl::StrContains(caller, " ")) {
        return absl::InvalidArgumentError(
            absl::StrCat("rules[", i, "].callers[", j,
                         "]: must be a URI such as spiffe://hospital/patients, "
                         "got \"",
                         caller, "\""));
      }
      checked.callers.push_back(caller);
    }
    policy.rules_.push_back(std::move(checked));
  }
  return policy;
}

absl::StatusOr<CallerPolicy> CallerPolicy::LoadFile(const std::string& path) {
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot read \"", path, "\""));
  std::stringstream text;
  text << file.rdbuf();
  absl::StatusOr<CallerPolicy> policy = FromJson(text.str());
  if (!policy.ok()) {
    return absl::Status(policy.status().code(),
                        absl::StrCat(path, ": ", policy.status().message()));
  }
  return policy;
}

CallerPolicy::Decision CallerPolicy::Check(absl::string_view full_method,
                                           const std::vector<std::string>& identities) const {
  const std::optional<base::MethodName> call =
      base::ParseMethodName(std::string_view(full_method.data(), full_method.size()));
  if (!call) return {};
  std::string refusing_pattern;
  for (const Rule& rule : rules_) {
    const auto pattern = std::find_if(rule.methods.begin(), rule.methods.end(),
                                      [&](const std::string& p) { return Covers(p, *call); });
    if (pattern == rule.methods.end()) continue;
    for (const std::string& identity : identities) {
      if (std::find(rule.callers.begin(), rule.callers.end(), identity) != rule.callers.end()) {
        return {};
      }
    }
    if (refusing_pattern.empty()) refusing_pattern = *pattern;
  }
  if (refusing_pattern.empty()) return {};
  return {
      absl::PermissionDeniedError(absl::StrCat(
          "caller ",
          identities.empty() ? "without a certificate identity" : absl::StrJoin(identities, ","),
          " may not call ", full_method)),
      std::move(refusing_pattern)};
}

std::vector<std::string> CallerIdentities(const grpc::ServerContextBase& context) {
  std::vector<std::string> identities;
  const std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return identities;
  for (const grpc::string_ref& uri : auth->FindPropertyValues(GRPC_PEER_URI_PROPERTY_NAME)) {
    identities.emplace_back(uri.data(), uri.size());
  }
  return identities;
}

CallerAuthorizationFactory::CallerAuthorizationFactory(CallerPolicy policy,
                                                       prometheus::Registry& metrics)
    : policy_(std::move(policy)),
      denied_(prometheus::BuildCounter()
                  .Name("hospital_rpc_access_denied_total")
                  .Help("Calls refused with PERMISSION_DENIED by the caller policy "
                        "(--authz_policy), by the policy's method pattern that refused them.")
                  .Register(metrics)) {}

grpc::experimental::Interceptor* CallerAuthorizationFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new CallerAuthorizationInterceptor(*this, info);
}

absl::Status CallerAuthorizationFactory::Decide(absl::string_view full_method,
                                                const grpc::ServerContextBase& context) {
  CallerPolicy::Decision decision = policy_.Check(full_method, CallerIdentities(context));
  if (!decision.status.ok()) denied_.Add({{"method", decision.pattern}}).Increment();
  return std::move(decision.status);
}

}  // namespace server_kit
