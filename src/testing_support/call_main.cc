// hospital_call: one unary call to a hospital service, the request and the answer in protobuf's
// JSON form, for scripts that drive the system from outside where grpcurl is not installed (the
// container image test). The methods are those of the protos compiled in, not reflection.
//
//   hospital_call --address=127.0.0.1:50051
//       --method=hospital.patients.v1.PatientsService/GetPatient --body='{"patientId": "p-1"}'
//
// Prints the response as JSON on stdout. Exit code: the gRPC status code (0 for OK, the message
// on stderr); 64 for a usage error (unknown method, a body that does not parse).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "base/sync.h"
#include "hospital/appointments/v1/appointments.pb.h"
#include "hospital/morgue/v1/morgue.pb.h"
#include "hospital/patients/v1/patients.pb.h"

ABSL_FLAG(std::string, address, "127.0.0.1:50051", "Server to call, host:port");
ABSL_FLAG(std::string, method, "", "package.Service/Method");
ABSL_FLAG(std::string, body, "{}", "The request in protobuf's JSON form");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10), "The call's deadline");

namespace {

constexpr int kUsage = 64;

int Usage(const std::string& why) {
  std::fprintf(stderr, "hospital_call: %s\n", why.c_str());
  return kUsage;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "One unary call, JSON in and out.\n"
      "Usage: hospital_call --address=host:port --method=package.Service/Method --body='{...}'");
  absl::ParseCommandLine(argc, argv);
  // Referenced so that the linker keeps their descriptors in the generated pool.
  hospital::patients::v1::Patient::descriptor();
  hospital::morgue::v1::Admission::descriptor();
  hospital::appointments::v1::Appointment::descriptor();

  const std::string method_name = absl::GetFlag(FLAGS_method);
  const google::protobuf::MethodDescriptor* method =
      google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
          absl::StrReplaceAll(method_name, {{"/", "."}}));
  if (method == nullptr) return Usage("--method: no method named \"" + method_name + "\"");
  google::protobuf::DynamicMessageFactory factory;
  std::unique_ptr<google::protobuf::Message> request(
      factory.GetPrototype(method->input_type())->New());
  std::unique_ptr<google::protobuf::Message> response(
      factory.GetPrototype(method->output_type())->New());
  if (const auto parsed =
          google::protobuf::util::JsonStringToMessage(absl::GetFlag(FLAGS_body), request.get());
      !parsed.ok()) {
    return Usage("--body: " + parsed.ToString());
  }

  grpc::GenericStub stub(
      grpc::CreateChannel(absl::GetFlag(FLAGS_address), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::GetFlag(FLAGS_timeout)));
  const std::string serialized = request->SerializeAsString();
  grpc::Slice slice(serialized);
  grpc::ByteBuffer sent(&slice, 1);
  grpc::ByteBuffer received;
  grpc::Status status;  // Written by the callback before it notifies.
  base::Notification finished;
  stub.UnaryCall(&context, "/" + method_name, grpc::StubOptions(), &sent, &received,
                 [&](grpc::Status call_status) {
                   status = std::move(call_status);
                   finished.Notify();
                 });
  finished.WaitForNotification();
  if (!status.ok()) {
    std::fprintf(stderr, "%d %s\n", static_cast<int>(status.error_code()),
                 status.error_message().c_str());
    return static_cast<int>(status.error_code());
  }
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (received.Dump(&slices).ok()) {
    for (const grpc::Slice& part : slices) {
      bytes.append(reinterpret_cast<const char*>(part.begin()), part.size());
    }
  }
  if (!response->ParseFromString(bytes)) {
    std::fprintf(stderr, "the response does not parse as %s\n",
                 method->output_type()->full_name().c_str());
    return static_cast<int>(grpc::StatusCode::INTERNAL);
  }
  std::string json;
  google::protobuf::util::JsonPrintOptions print;
  print.always_print_primitive_fields = false;
  (void)google::protobuf::util::MessageToJsonString(*response, &json, print);
  std::printf("%s\n", json.c_str());
  return 0;
}
