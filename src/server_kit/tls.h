// TLS and mutual TLS for the services' listeners and for the channels one service opens to
// another, from PEM files that are watched and reloaded (gRPC's FileWatcherCertificateProvider):
// a certificate renewed on disk (by cert-manager, or by hand with a rename) is used for new
// connections within `refresh` without a restart; connections already open keep theirs.
//
//   TlsFiles files{"/tls/tls.crt", "/tls/tls.key", "/tls/ca.crt", absl::Minutes(1)};
//   ASSIGN_OR_RETURN(auto server_credentials,
//                    TlsServerCredentialsFrom(files, ClientCertificates::kRequire));
//   ASSIGN_OR_RETURN(auto channel_credentials, TlsChannelCredentialsFrom(files));
//
// A server with ClientCertificates::kRequire (mutual TLS) ends the handshake of a client that
// presents no certificate, or one that `ca` did not sign; a plaintext client cannot connect at
// all. A channel verifies the server's certificate against `ca` and checks that it names the host
// the channel was made for (a DNS or IP subject alternative name), and presents `cert` as its own
// identity. The files are checked once here, so that a wrong path fails at start-up with the
// flag's name rather than at the first handshake.
#ifndef HOSPITAL_SRC_SERVER_KIT_TLS_H_
#define HOSPITAL_SRC_SERVER_KIT_TLS_H_

#include <memory>
#include <string>

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace server_kit {

struct TlsFiles {
  std::string cert;  // PEM certificate chain, leaf first.
  std::string key;   // PEM private key of the leaf.
  std::string ca;    // PEM certificates to trust; empty: the system's roots (channels only).
  // How often the files are read again.
  absl::Duration refresh = absl::Minutes(1);
};

enum class ClientCertificates {
  kNone,      // Not asked for: server-side TLS only.
  kRequire,   // Mutual TLS: a certificate signed by `ca` is required.
  kOptional,  // Asked for and verified against `ca` when presented, but not required.
};

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TlsServerCredentialsFrom(
    const TlsFiles& files, ClientCertificates client_certificates);

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> TlsChannelCredentialsFrom(
    const TlsFiles& files);

}  // namespace server_kit

#endif  // HOSPITAL_SRC_SERVER_KIT_TLS_H_
