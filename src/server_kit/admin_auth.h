// Who may change a running service. The mutating RPCs of the admin listener (ResilienceAdmin's
// force-open, disable and reset; FaultInjection's SetFault and ClearFaults) ask this class who
// their caller is, and refuse it unless it proved itself with either
//   - a bearer token: metadata "authorization: Bearer <token>", the token read from a file
//     (--admin_token_file) and compared in constant time; or
//   - a client certificate signed by the operator CA (--admin_tls_ca), which the admin
//     listener's TLS handshake verified (the listener asks for one but does not require it, so
//     that a token alone also works).
// Listing (ListCircuitBreakers, ListFaults), health and reflection need neither: only operators
// reach the admin listener (loopback by default, a NetworkPolicy in Kubernetes), and what they
// show steers nothing. With neither a token nor an operator CA configured, every change is
// refused, saying how to configure one.
//
//   AdminAuthenticator auth({.token = token, .trust_client_certificates = true}, registry);
//   ASSIGN_OR_RETURN(std::string who, auth.Authenticate(*context, "SetFault"));
//
// Refusals are counted in hospital_admin_refusals_total{method}. Thread-safe.
#ifndef HOSPITAL_SRC_SERVER_KIT_ADMIN_AUTH_H_
#define HOSPITAL_SRC_SERVER_KIT_ADMIN_AUTH_H_

#include <string>

#include <grpcpp/server_context.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace server_kit {

struct AdminCredentials {
  // The bearer token callers may send; empty: tokens are not accepted.
  std::string token;
  // Whether a client certificate the admin listener verified (against the operator CA) is
  // enough. Only set it when that listener's TLS verifies client certificates against a CA
  // that signs operators' certificates alone.
  bool trust_client_certificates = false;
};

class AdminAuthenticator final {
 public:
  AdminAuthenticator(AdminCredentials credentials, prometheus::Registry& metrics);

  // The caller's identity for an audit line (the certificate's identity, or "bearer token"),
  // or UNAUTHENTICATED saying what to send. `method` labels the refusal metric; pass a constant.
  absl::StatusOr<std::string> Authenticate(const grpc::ServerContext& context,
                                           absl::string_view method) const;

 private:
  absl::StatusOr<std::string> Check(const grpc::ServerContext& context) const;

  const AdminCredentials credentials_;
  prometheus::Family<prometheus::Counter>& refusals_;
};

// Reads a token from `path`: the file's contents without surrounding white space, not empty.
// `flag` names the flag in the error.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path, absl::string_view flag);

// Whether `a` equals `b`, in time that depends only on their lengths.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace server_kit

#endif  // HOSPITAL_SRC_SERVER_KIT_ADMIN_AUTH_H_
