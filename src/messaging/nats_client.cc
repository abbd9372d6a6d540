#include "messaging/nats_client.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "server_kit/log.h"

namespace messaging {
namespace {

int64_t Milliseconds(absl::Duration duration) { return absl::ToInt64Milliseconds(duration); }

}  // namespace

absl::Status FromNatsStatus(natsStatus status, absl::string_view context) {
  if (status == NATS_OK) return absl::OkStatus();
  const std::string message = absl::StrCat(context, ": ", natsStatus_GetText(status));
  switch (status) {
    case NATS_TIMEOUT:
      return absl::DeadlineExceededError(message);
    case NATS_CONNECTION_CLOSED:
    case NATS_NO_SERVER:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NO_RESPONDERS:
    case NATS_IO_ERROR:
    case NATS_STALE_CONNECTION:
    case NATS_SLOW_CONSUMER:
    case NATS_INSUFFICIENT_BUFFER:
    case NATS_DRAINING:
      return absl::UnavailableError(message);
    case NATS_NOT_FOUND:
      return absl::NotFoundError(message);
    case NATS_INVALID_ARG:
    case NATS_INVALID_SUBJECT:
    case NATS_ADDRESS_MISSING:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status FromJetStreamError(natsStatus status, jsErrCode code, absl::string_view context) {
  if (status == NATS_OK) return absl::OkStatus();
  if (code == JSStreamNotFoundErr || code == JSConsumerNotFoundErr) {
    return absl::NotFoundError(absl::StrCat(context, ": not found"));
  }
  if (code != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        context, ": JetStream error ", static_cast<int>(code), ": ", natsStatus_GetText(status)));
  }
  return FromNatsStatus(status, context);
}

NatsClient::NatsClient(NatsClientOptions options, prometheus::Registry& metrics)
    : options_(std::move(options)),
      connected_gauge_(prometheus::BuildGauge()
                           .Name("hospital_nats_connected")
                           .Help("1 while the connection to NATS is up, else 0")
                           .Register(metrics)
                           .Add({{"client", options_.name}})),
      disconnects_(prometheus::BuildCounter()
                       .Name("hospital_nats_disconnects_total")
                       .Help("Times the connection to NATS was lost")
                       .Register(metrics)
                       .Add({{"client", options_.name}})) {}

namespace {

// The host of the first URL in `urls` ("nats://user@host:4222,..." -> "host").
std::string FirstHost(const std::string& urls) {
  std::string first = urls.substr(0, urls.find(','));
  if (const std::size_t scheme = first.find("://"); scheme != std::string::npos) {
    first = first.substr(scheme + 3);
  }
  if (const std::size_t at = first.rfind('@'); at != std::string::npos)
    first = first.substr(at + 1);
  if (!first.empty() && first.front() == '[') return first.substr(1, first.find(']') - 1);
  return first.substr(0, first.find(':'));
}

absl::Status ConfigureTls(const NatsClientOptions& options, natsOptions* nats_options) {
  if (options.tls_ca.empty()) {
    if (!options.tls_cert.empty() || !options.tls_key.empty()) {
      return absl::InvalidArgumentError(
          "--nats_tls_ca: needed with --nats_tls_cert (TLS to the broker is on with a CA)");
    }
    return absl::OkStatus();
  }
  if (natsOptions_SetSecure(nats_options, true) != NATS_OK) {
    return absl::InternalError("this libnats was built without TLS");
  }
  if (natsOptions_LoadCATrustedCertificates(nats_options, options.tls_ca.c_str()) != NATS_OK) {
    return absl::InvalidArgumentError(absl::StrCat("--nats_tls_ca: cannot load \"", options.tls_ca,
                                                   "\": ", nats_GetLastError(nullptr)));
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError("--nats_tls_cert and --nats_tls_key: give both or neither");
  }
  if (!options.tls_cert.empty() &&
      natsOptions_LoadCertificatesChain(nats_options, options.tls_cert.c_str(),
                                        options.tls_key.c_str()) != NATS_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat("--nats_tls_cert: cannot load \"", options.tls_cert,
                     "\" with its key: ", nats_GetLastError(nullptr)));
  }
  const std::string server_name =
      options.tls_server_name.empty() ? FirstHost(options.url) : options.tls_server_name;
  if (natsOptions_SetExpectedHostname(nats_options, server_name.c_str()) != NATS_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat("--nats_tls_server_name: cannot expect \"", server_name, "\""));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<NatsClient>> NatsClient::Create(const NatsClientOptions& options,
                                                               prometheus::Registry& metrics) {
  std::unique_ptr<NatsClient> client(new NatsClient(options, metrics));
  natsOptions* nats_options = nullptr;
  if (natsStatus status = natsOptions_Create(&nats_options); status != NATS_OK) {
    return FromNatsStatus(status, "creating NATS options");
  }
  client->nats_options_ = nats_options;
  natsStatus status = natsOptions_SetServers(nats_options, nullptr, 0);
  if (status == NATS_OK) status = natsOptions_SetURL(nats_options, options.url.c_str());
  if (status != NATS_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat("--nats_url: \"", options.url, "\" is not a NATS URL list"));
  }
  status = natsOptions_SetName(nats_options, options.name.c_str());
  if (status == NATS_OK) status = natsOptions_SetMaxReconnect(nats_options, -1);
  if (status == NATS_OK) {
    status = natsOptions_SetReconnectWait(nats_options, Milliseconds(options.reconnect_wait));
  }
  if (status == NATS_OK) {
    status = natsOptions_SetReconnectBufSize(nats_options, options.reconnect_buffer_bytes);
  }
  if (status == NATS_OK) {
    status = natsOptions_SetDisconnectedCB(nats_options, &NatsClient::OnDisconnected, client.get());
  }
  if (status == NATS_OK) {
    status = natsOptions_SetReconnectedCB(nats_options, &NatsClient::OnReconnected, client.get());
  }
  if (status == NATS_OK) {
    status = natsOptions_SetClosedCB(nats_options, &NatsClient::OnClosed, client.get());
  }
  if (status == NATS_OK) {
    // Without this a first connect that finds no server fails for good.
    status = natsOptions_SetRetryOnFailedConnect(nats_options, true, &NatsClient::OnConnected,
                                                 client.get());
  }
  if (status != NATS_OK) return FromNatsStatus(status, "configuring the NATS connection");
  RETURN_IF_ERROR(ConfigureTls(options, nats_options));
  status = natsConnection_Connect(&client->connection_, nats_options);
  // NATS_NOT_YET_CONNECTED: no server yet; the library keeps trying in the background.
  if (status != NATS_OK && status != NATS_NOT_YET_CONNECTED) {
    return FromNatsStatus(status, absl::StrCat("connecting to NATS at ", options.url));
  }
  if (status == NATS_OK) {
    client->connected_gauge_.Set(1);
  } else {
    server_kit::Log(server_kit::LogLevel::kWarning, "nats_not_yet_connected",
                    {{"url", options.url}, {"hint", "retrying in the background"}});
  }
  jsOptions js_options = client->BaseJetStreamOptions();
  status = natsConnection_JetStream(&client->jetstream_, client->connection_, &js_options);
  if (status != NATS_OK) return FromNatsStatus(status, "creating the JetStream context");
  return client;
}

NatsClient::~NatsClient() {
  if (jetstream_ != nullptr) jsCtx_Destroy(jetstream_);
  if (connection_ != nullptr) {
    natsConnection_Close(connection_);
    if (!closed_.WaitForNotificationWithTimeout(absl::Seconds(10))) {
      server_kit::Log(server_kit::LogLevel::kError, "nats_close_timeout",
                      {{"hint", "libnats did not report the connection closed within 10s"}});
    }
    natsConnection_Destroy(connection_);
  }
  if (nats_options_ != nullptr) natsOptions_Destroy(nats_options_);
}

bool NatsClient::connected() const {
  return connection_ != nullptr && natsConnection_Status(connection_) == NATS_CONN_STATUS_CONNECTED;
}

jsOptions NatsClient::BaseJetStreamOptions() const {
  jsOptions js_options;
  jsOptions_Init(&js_options);
  js_options.Wait = Milliseconds(options_.api_timeout);
  return js_options;
}

absl::StatusOr<jsCtx*> NatsClient::NewPublishingContext(jsPubAckHandler handler,
                                                        void* closure) const {
  jsOptions js_options = BaseJetStreamOptions();
  js_options.PublishAsync.MaxPending = options_.max_pending_publishes;
  js_options.PublishAsync.AckHandler = handler;
  js_options.PublishAsync.AckHandlerClosure = closure;
  jsCtx* context = nullptr;
  if (natsStatus status = natsConnection_JetStream(&context, connection_, &js_options);
      status != NATS_OK) {
    return FromNatsStatus(status, "creating the JetStream publishing context");
  }
  return context;
}

void NatsClient::OnDisconnected(natsConnection* /*connection*/, void* closure) {
  auto* client = static_cast<NatsClient*>(closure);
  client->connected_gauge_.Set(0);
  client->disconnects_.Increment();
  server_kit::Log(server_kit::LogLevel::kWarning, "nats_disconnected",
                  {{"url", client->options_.url}, {"hint", "reconnecting in the background"}});
}

void NatsClient::OnReconnected(natsConnection* /*connection*/, void* closure) {
  auto* client = static_cast<NatsClient*>(closure);
  client->connected_gauge_.Set(1);
  server_kit::Log(server_kit::LogLevel::kInfo, "nats_reconnected", {{"url", client->options_.url}});
}

void NatsClient::OnClosed(natsConnection* /*connection*/, void* closure) {
  static_cast<NatsClient*>(closure)->closed_.Notify();
}

void NatsClient::OnConnected(natsConnection* /*connection*/, void* closure) {
  auto* client = static_cast<NatsClient*>(closure);
  client->connected_gauge_.Set(1);
  server_kit::Log(server_kit::LogLevel::kInfo, "nats_connected", {{"url", client->options_.url}});
}

}  // namespace messaging
