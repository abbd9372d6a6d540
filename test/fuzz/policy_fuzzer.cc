// libFuzzer target: any bytes as a resilience policy. The parser must answer OK or
// INVALID_ARGUMENT naming a field, never crash, and a policy it accepts must build targets.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <prometheus/registry.h>

#include "base/testing/fake_environment.h"
#include "resilience/policy.h"
#include "resilience/target.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<resilience::Policy> policy = resilience::ParsePolicyJson(json);
  if (!policy.ok()) {
    if (policy.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  base::testing::FakeEnvironment env;
  prometheus::Registry registry;
  resilience::TargetRegistry targets(*std::move(policy), env.environment(), registry);
  targets.GetTarget("morgue").Method("/hospital.morgue.v1.MorgueService/AdmitDeceased");
  return 0;
}
