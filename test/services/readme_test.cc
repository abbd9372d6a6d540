// The grpcurl commands in README.md and docs/*.md (plaintext and TLS alike): every request body
// must be valid JSON for the method it is sent to, with the field names the services really have.
// (test/docs/check_docs.py checks the pages' links, paths, binaries and flags.)
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/util/json_util.h>
#include <catch2/catch.hpp>

#include "hospital/appointments/v1/appointments.pb.h"
#include "hospital/faults/v1/faults.pb.h"
#include "hospital/messaging/v1/inbox.pb.h"
#include "hospital/morgue/v1/morgue.pb.h"
#include "hospital/patients/v1/patients.pb.h"
#include "resilience/v1/admin.pb.h"

namespace {

struct GrpcurlCall {
  std::string body;    // Empty when the command sends none.
  std::string method;  // "package.Service/Method", or "" for list/describe.
};

// Finds every grpcurl command in `text`, joining lines continued with a backslash.
std::vector<GrpcurlCall> GrpcurlCalls(const std::string& text) {
  std::vector<GrpcurlCall> calls;
  std::size_t at = 0;
  while ((at = text.find("grpcurl -", at)) != std::string::npos) {
    std::size_t end = at;
    // The command ends at the first newline not preceded by a backslash, outside quotes.
    bool quoted = false;
    for (; end < text.size(); ++end) {
      if (text[end] == '\'') quoted = !quoted;
      if (text[end] == '\n' && !quoted && (end == 0 || text[end - 1] != '\\')) break;
    }
    const std::string command = text.substr(at, end - at);
    GrpcurlCall call;
    const std::size_t body_start = command.find("-d '");
    std::size_t rest = 0;
    if (body_start != std::string::npos) {
      const std::size_t body_end = command.find('\'', body_start + 4);
      call.body = command.substr(body_start + 4, body_end - body_start - 4);
      rest = body_end + 1;
    }
    std::istringstream words(command.substr(rest));
    for (std::string word; words >> word;) {
      // "package.Service/Method": one slash, an identifier after it (file paths such as
      // run/certs/ca.crt have more slashes or a dot).
      const std::size_t slash = word.find('/');
      if (slash == std::string::npos || word.find('/', slash + 1) != std::string::npos ||
          word.find(':') != std::string::npos) {
        continue;
      }
      const std::string after = word.substr(slash + 1);
      if (!after.empty() && std::all_of(after.begin(), after.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
          })) {
        call.method = word;
      }
    }
    calls.push_back(call);
    at = end;
  }
  return calls;
}

TEST_CASE("the docs' grpcurl bodies parse as the methods' request messages", "[readme]") {
  // Linked in so that their descriptors are in the generated pool.
  hospital::patients::v1::RecordDeathRequest::descriptor();
  hospital::morgue::v1::GetAdmissionRequest::descriptor();
  hospital::appointments::v1::ListAppointmentsRequest::descriptor();
  resilience::v1::CircuitBreakerRequest::descriptor();
  hospital::faults::v1::SetFaultRequest::descriptor();
  hospital::messaging::v1::ListRejectedEventsRequest::descriptor();

  std::vector<std::string> pages = {std::string(HOSPITAL_SOURCE_DIR) + "/README.md"};
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(HOSPITAL_SOURCE_DIR) + "/docs")) {
    if (entry.path().extension() == ".md") pages.push_back(entry.path().string());
  }
  std::vector<std::pair<std::string, GrpcurlCall>> calls;  // Page, call.
  for (const std::string& page : pages) {
    std::ifstream file(page);
    std::stringstream text;
    text << file.rdbuf();
    for (GrpcurlCall& call : GrpcurlCalls(text.str())) calls.emplace_back(page, std::move(call));
  }
  REQUIRE(calls.size() >= 10);
  int checked = 0;
  for (const auto& [page, call] : calls) {
    if (call.method.empty()) continue;
    INFO(page << ": method " << call.method << ", body " << call.body);
    const std::size_t slash = call.method.find('/');
    const std::string full_name =
        call.method.substr(0, slash) + "." + call.method.substr(slash + 1);
    const google::protobuf::MethodDescriptor* method =
        google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(full_name);
    if (call.method.rfind("grpc.health.v1.", 0) == 0) continue;  // gRPC's own.
    REQUIRE(method != nullptr);
    google::protobuf::DynamicMessageFactory factory;
    std::unique_ptr<google::protobuf::Message> request(
        factory.GetPrototype(method->input_type())->New());
    const auto parsed = google::protobuf::util::JsonStringToMessage(
        call.body.empty() ? "{}" : call.body, request.get());
    CHECK(parsed.ok());
    ++checked;
  }
  CHECK(checked >= 12);
}

}  // namespace
