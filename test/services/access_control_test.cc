// The caller policy's rules and the admin authenticator's, without a server: what is allowed,
// what is refused, and the errors that name the field.
#include <catch2/catch.hpp>

#include "server_kit/admin_auth.h"
#include "server_kit/caller_authorization.h"

namespace {

using server_kit::CallerPolicy;

constexpr char kAdmit[] = "/hospital.morgue.v1.MorgueService/AdmitDeceased";
constexpr char kGet[] = "/hospital.morgue.v1.MorgueService/GetAdmission";
constexpr char kPatients[] = "spiffe://hospital/patients";

TEST_CASE("a method named by a rule is for its callers alone, and the others are open to all",
          "[authz]") {
  const absl::StatusOr<CallerPolicy> policy = CallerPolicy::FromJson(R"({"rules": [
      {"methods": ["hospital.morgue.v1.MorgueService/AdmitDeceased"],
       "callers": ["spiffe://hospital/patients"]},
      {"methods": ["hospital.morgue.v1.MorgueService/AdmitDeceased"],
       "callers": ["spiffe://hospital/night-shift"]},
      {"methods": ["hospital.appointments.v1.AppointmentsService/*"],
       "callers": ["spiffe://hospital/patients"]}]})");
  REQUIRE(policy.ok());
  CHECK(policy->Check(kAdmit, {kPatients}).status.ok());
  // Any rule naming the method may let the caller in.
  CHECK(policy->Check(kAdmit, {"spiffe://hospital/night-shift"}).status.ok());
  // One of several identities is enough.
  CHECK(policy->Check(kAdmit, {"spiffe://hospital/other", kPatients}).status.ok());
  const CallerPolicy::Decision refused = policy->Check(kAdmit, {"spiffe://hospital/reception"});
  CHECK(refused.status.code() == absl::StatusCode::kPermissionDenied);
  CHECK(std::string(refused.status.message()) ==
        "caller spiffe://hospital/reception may not call " + std::string(kAdmit));
  CHECK(refused.pattern == "hospital.morgue.v1.MorgueService/AdmitDeceased");
  const CallerPolicy::Decision anonymous = policy->Check(kAdmit, {});
  CHECK(anonymous.status.code() == absl::StatusCode::kPermissionDenied);
  CHECK_THAT(std::string(anonymous.status.message()), Catch::Contains("without a certificate"));
  // Methods no rule names are open to every caller.
  CHECK(policy->Check(kGet, {}).status.ok());
  // A service pattern covers each of its methods, and no other service's.
  CHECK(policy
            ->Check("/hospital.appointments.v1.AppointmentsService/CancelPatientAppointments",
                    {"spiffe://hospital/reception"})
            .status.code() == absl::StatusCode::kPermissionDenied);
  CHECK(policy->Check("/hospital.appointments.v2.AppointmentsService/Cancel", {}).status.ok());
  // Identities are compared exactly: no prefix or case games.
  CHECK_FALSE(policy->Check(kAdmit, {"spiffe://hospital/patients/evil"}).status.ok());
  CHECK_FALSE(policy->Check(kAdmit, {"SPIFFE://hospital/patients"}).status.ok());
}

TEST_CASE("a caller policy that cannot mean what it says is refused, naming the field", "[authz]") {
  const auto error = [](const char* json) {
    const absl::StatusOr<CallerPolicy> policy = CallerPolicy::FromJson(json);
    REQUIRE_FALSE(policy.ok());
    CHECK(policy.status().code() == absl::StatusCode::kInvalidArgument);
    return std::string(policy.status().message());
  };
  CHECK_THAT(error(R"({"rules": [{"methods": [], "callers": ["a:b"]}]})"),
             Catch::StartsWith("rules[0].methods:"));
  CHECK_THAT(error(R"({"rules": [{"methods": ["a.B/C"]}]})"),
             Catch::StartsWith("rules[0].callers:"));
  CHECK_THAT(error(R"({"rules": [{"methods": ["a.B/C", "/a.B/C"], "callers": ["a:b"]}]})"),
             Catch::StartsWith("rules[0].methods[1]:"));
  CHECK_THAT(error(R"({"rules": [{"methods": ["a.B"], "callers": ["a:b"]}]})"),
             Catch::StartsWith("rules[0].methods[0]:"));
  CHECK_THAT(error(R"({"rules": [{"methods": ["*"], "callers": ["a:b"]}]})"),
             Catch::StartsWith("rules[0].methods[0]:"));
  CHECK_THAT(error(R"({"rules": [{"methods": ["a.B/C"], "callers": ["patients"]}]})"),
             Catch::StartsWith("rules[0].callers[0]: must be a URI"));
  CHECK_THAT(error(R"({"rule": []})"), Catch::StartsWith("not a valid caller policy"));
  CHECK(CallerPolicy::FromJson("{}").ok());
  CHECK(CallerPolicy::LoadFile("/nonexistent/policy.json").status().code() ==
        absl::StatusCode::kNotFound);
}

TEST_CASE("tokens are compared in full", "[authz]") {
  CHECK(server_kit::ConstantTimeEquals("secret", "secret"));
  CHECK_FALSE(server_kit::ConstantTimeEquals("secret", "secreT"));
  CHECK_FALSE(server_kit::ConstantTimeEquals("secret", "secret!"));
  CHECK_FALSE(server_kit::ConstantTimeEquals("", "x"));
  CHECK(server_kit::ConstantTimeEquals("", ""));
}

}  // namespace
