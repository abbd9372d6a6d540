#include "server_kit/tls.h"

#include <algorithm>
#include <fstream>

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace server_kit {
namespace {

// Whether `path` can be read and holds PEM text of `kind` ("CERTIFICATE", "PRIVATE KEY").
absl::Status CheckPem(const std::string& path, const char* what, const char* kind) {
  std::ifstream file(path);
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (!file.good() && !file.eof()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": cannot read \"", path, "\""));
  }
  if (text.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": cannot read \"", path, "\""));
  }
  if (!absl::StrContains(text, "-----BEGIN ") || !absl::StrContains(text, kind)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": \"", path, "\" holds no PEM ", kind));
  }
  return absl::OkStatus();
}

unsigned int RefreshSeconds(absl::Duration refresh) {
  return static_cast<unsigned int>(std::max<std::int64_t>(1, absl::ToInt64Seconds(refresh)));
}

absl::Status CheckFiles(const TlsFiles& files, bool ca_required) {
  if (files.cert.empty() || files.key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key: both are needed for TLS");
  }
  if (absl::Status status = CheckPem(files.cert, "--tls_cert", "CERTIFICATE"); !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckPem(files.key, "--tls_key", "PRIVATE KEY"); !status.ok()) {
    return status;
  }
  if (ca_required && files.ca.empty()) {
    return absl::InvalidArgumentError("--tls_ca: needed to verify client certificates");
  }
  if (!files.ca.empty()) {
    if (absl::Status status = CheckPem(files.ca, "--tls_ca", "CERTIFICATE"); !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::experimental::CertificateProviderInterface> ProviderFor(
    const TlsFiles& files) {
  if (files.ca.empty()) {
    return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        files.key, files.cert, RefreshSeconds(files.refresh));
  }
  return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      files.key, files.cert, files.ca, RefreshSeconds(files.refresh));
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TlsServerCredentialsFrom(
    const TlsFiles& files, ClientCertificates client_certificates) {
  if (absl::Status status = CheckFiles(files, client_certificates != ClientCertificates::kNone);
      !status.ok()) {
    return status;
  }
  grpc::experimental::TlsServerCredentialsOptions options(ProviderFor(files));
  options.watch_identity_key_cert_pairs();
  switch (client_certificates) {
    case ClientCertificates::kNone:
      options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
      break;
    case ClientCertificates::kRequire:
      options.watch_root_certs();
      options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
      break;
    case ClientCertificates::kOptional:
      options.watch_root_certs();
      options.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
      break;
  }
  return grpc::experimental::TlsServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> TlsChannelCredentialsFrom(
    const TlsFiles& files) {
  if (absl::Status status = CheckFiles(files, /*ca_required=*/false); !status.ok()) {
    return status;
  }
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(ProviderFor(files));
  options.watch_identity_key_cert_pairs();
  // Without watched roots gRPC trusts the system's.
  if (!files.ca.empty()) options.watch_root_certs();
  options.set_verify_server_certs(true);
  // The server's certificate must name the host the channel was made for.
  options.set_certificate_verifier(
      std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
  return grpc::experimental::TlsCredentials(options);
}

}  // namespace server_kit
