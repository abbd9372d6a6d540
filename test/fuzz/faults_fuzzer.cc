// libFuzzer target: any bytes as a fault set (--faults_file). Every rule is either refused with
// INVALID_ARGUMENT or stored; deciding a call's fate under the stored rules never crashes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <google/protobuf/util/json_util.h>
#include <prometheus/registry.h>

#include "base/testing/fake_environment.h"
#include "hospital/faults/v1/faults.pb.h"
#include "server_kit/fault_injection.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string json(reinterpret_cast<const char*>(data), size);
  hospital::faults::v1::FaultSet set;
  if (!google::protobuf::util::JsonStringToMessage(json, &set).ok()) return 0;
  base::testing::FakeEnvironment env;
  prometheus::Registry registry;
  server_kit::FaultInjector injector(env.environment(), registry);
  for (const hospital::faults::v1::Fault& fault : set.faults()) {
    const absl::StatusOr<hospital::faults::v1::Fault> stored = injector.Set(fault);
    if (!stored.ok() && stored.status().code() != absl::StatusCode::kInvalidArgument) {
      std::abort();
    }
  }
  injector.Decide("/hospital.morgue.v1.MorgueService/AdmitDeceased");
  injector.Decide("/hospital.patients.v1.PatientsService/RecordDeath");
  injector.NotServing();
  env.Advance(absl::Hours(2));  // Past every expiry.
  injector.List();
  return 0;
}
