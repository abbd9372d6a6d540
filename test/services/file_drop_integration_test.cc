// The file drop (--death_workflow=file_drop) against the real binaries: a death reaches both
// services through a file within about two intervals and the file is then deleted; with the
// morgue killed (SIGKILL) while files pile up and again while it reads them, every death is
// admitted exactly once.
#include <filesystem>

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server_kit/rpc_support.h"
#include "support/hospital_fixture.h"

namespace {

using testing_support::ContextWithTimeout;
using testing_support::Eventually;
using testing_support::Hospital;
namespace patients_v1 = hospital::patients::v1;
namespace morgue_v1 = hospital::morgue::v1;
namespace appointments_v1 = hospital::appointments::v1;

testing_support::HospitalOptions FileDropOptions() {
  testing_support::HospitalOptions options;
  options.every_service_flags = {"--death_workflow=file_drop", "--file_drop_dir={dir}/drop",
                                 "--file_drop_interval=0.2s"};
  return options;
}

// A file drop answers once the death is committed here: the others learn of it later.
void RecordDeath(Hospital& hospital, const std::string& patient_id) {
  CHECK(hospital.RequireDeath(patient_id).downstream_state() == patients_v1::DOWNSTREAM_PENDING);
}

int EventFiles(const std::string& drop) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(drop)) {
    if (absl::EndsWith(entry.path().filename().string(), ".evt")) ++count;
  }
  return count;
}

TEST_CASE("file drop: a death reaches both through a file, which is then deleted",
          "[file_drop][hospital]") {
  Hospital hospital(FileDropOptions());
  hospital.Start();
  hospital.CreatePatient("p-1");
  hospital.Schedule("p-1", absl::Hours(24));
  RecordDeath(hospital, "p-1");
  const absl::Time acknowledged = absl::Now();
  CHECK(Eventually(
      [&] { return hospital.CountAdmissions() == 1 && hospital.CountScheduled("p-1") == 0; },
      absl::Seconds(10)));
  // One interval until the file is written, up to one more until each consumer reads it.
  CHECK(absl::Now() - acknowledged < absl::Seconds(2));
  CHECK(Eventually([&] { return EventFiles(hospital.dir() + "/drop") == 0; }, absl::Seconds(5)));
}

TEST_CASE(
    "file drop: the morgue killed while files pile up and while it reads them admits "
    "every death exactly once",
    "[file_drop][hospital]") {
  constexpr int kDeaths = 30;
  Hospital hospital(FileDropOptions());
  hospital.Start();
  hospital.morgue_process().Kill();
  for (int i = 0; i < kDeaths; ++i) {
    const std::string id = absl::StrCat("p-", i);
    hospital.CreatePatient(id);
    RecordDeath(hospital, id);
    if (i % 10 == 9) absl::SleepFor(absl::Milliseconds(250));  // Several files.
  }
  REQUIRE(Eventually([&] { return EventFiles(hospital.dir() + "/drop") >= 2; }, absl::Seconds(5)));
  REQUIRE(hospital.morgue_process().Start().ok());
  REQUIRE(Eventually([&] { return hospital.CountAdmissions() > 0; }, absl::Seconds(10)));
  hospital.morgue_process().Kill();  // Mid-way through the files, or just after.
  REQUIRE(hospital.morgue_process().Start().ok());
  CHECK(Eventually([&] { return hospital.CountAdmissions() == kDeaths; }, absl::Seconds(15)));
  CHECK(Eventually([&] { return EventFiles(hospital.dir() + "/drop") == 0; }, absl::Seconds(5)));
  CHECK(hospital.CountAdmissions() == kDeaths);
}

}  // namespace
