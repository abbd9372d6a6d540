// Per-caller authorization on a service's public listener: which identities may call which
// methods (protos/hospital/security/v1/caller_policy.proto, read from --authz_policy).
//
//   ASSIGN_OR_RETURN(CallerPolicy policy, CallerPolicy::LoadFile(path));
//   server.AddInterceptorFactory(
//       std::make_unique<CallerAuthorizationFactory>(std::move(policy), registry));
//
// A caller is known by the URI subject alternative names of the client certificate the TLS
// handshake verified (CallerIdentities), so the policy needs mutual TLS. The interceptor decides
// when the request's metadata arrives, before the method runs; a refused call is marked (serve.h,
// kAccessDeniedKey) so that Serve answers it with PERMISSION_DENIED without running the method,
// and the status sent is replaced with the refusal whatever a handler returned. Every service
// handler goes through Serve; a test calls each workflow method with a stranger's identity and
// checks that none acted. Refusals count in hospital_rpc_access_denied_total{method}, labelled by
// the policy's pattern (so a caller cannot grow the label set). Thread-safe once built.
#ifndef HOSPITAL_SRC_SERVER_KIT_CALLER_AUTHORIZATION_H_
#define HOSPITAL_SRC_SERVER_KIT_CALLER_AUTHORIZATION_H_

#include <string>
#include <vector>

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace server_kit {

class CallerPolicy final {
 public:
  // Parses and checks a policy (JSON of hospital.security.v1.CallerPolicy); errors name the
  // field, e.g. "rules[0].methods[1]: ...".
  static absl::StatusOr<CallerPolicy> FromJson(absl::string_view json);
  // The same from a file; errors also name the file.
  static absl::StatusOr<CallerPolicy> LoadFile(const std::string& path);

  struct Decision {
    absl::Status status;  // OK or PERMISSION_DENIED.
    std::string pattern;  // The rule's method pattern that refused the call ("" when allowed).
  };
  // Whether a caller with `identities` may call `full_method` ("/package.Service/Method").
  Decision Check(absl::string_view full_method, const std::vector<std::string>& identities) const;

 private:
  struct Rule {
    std::vector<std::string> methods;  // "package.Service/Method" or "package.Service/*"
    std::vector<std::string> callers;
  };
  std::vector<Rule> rules_;
};

// The identities the caller of `context` proved: the URI subject alternative names of its
// verified client certificate; none on a plaintext or server-side-only TLS connection.
std::vector<std::string> CallerIdentities(const grpc::ServerContextBase& context);

class CallerAuthorizationFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  CallerAuthorizationFactory(CallerPolicy policy, prometheus::Registry& metrics);
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

  // For the interceptor: decides and counts a refusal.
  absl::Status Decide(absl::string_view full_method, const grpc::ServerContextBase& context);

 private:
  const CallerPolicy policy_;
  prometheus::Family<prometheus::Counter>& denied_;
};

}  // namespace server_kit

#endif  // HOSPITAL_SRC_SERVER_KIT_CALLER_AUTHORIZATION_H_
