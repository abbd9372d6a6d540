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

void RecordDeath(Hospital& hospital, const std::string& patient_id) {
  patients_v1::RecordDeathRequest request;
  request.set_patient_id(patient_id);
  request.set_cause("stroke");
  *request.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now() - absl::Hours(1));
  patients_v1::RecordDeathResponse response;
  const grpc::Status status = hospital.patients().RecordDeath(
      ContextWithTimeout(absl::Seconds(10)).get(), request, &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  CHECK(response.downstream_state() == patients_v1::DOWNSTREAM_PENDING);
}

int Admissions(Hospital& hospital) {
  morgue_v1::ListAdmissionsRequest request;
  request.set_page_size(500);
  morgue_v1::ListAdmissionsResponse response;
  if (!hospital.morgue()
           .ListAdmissions(ContextWithTimeout(absl::Seconds(2)).get(), request, &response)
           .ok()) {
    return -1;
  }
  return response.admissions_size();
}

int Scheduled(Hospital& hospital, const std::string& patient_id) {
  appointments_v1::ListAppointmentsRequest request;
  request.set_patient_id(patient_id);
  request.set_status(appointments_v1::SCHEDULED);
  appointments_v1::ListAppointmentsResponse response;
  REQUIRE(hospital.appointments()
              .ListAppointments(ContextWithTimeout(absl::Seconds(5)).get(), request, &response)
              .ok());
  return response.appointments_size();
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
  CHECK(Eventually([&] { return Admissions(hospital) == 1 && Scheduled(hospital, "p-1") == 0; },
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
  REQUIRE(Eventually([&] { return Admissions(hospital) > 0; }, absl::Seconds(10)));
  hospital.morgue_process().Kill();  // Mid-way through the files, or just after.
  REQUIRE(hospital.morgue_process().Start().ok());
  CHECK(Eventually([&] { return Admissions(hospital) == kDeaths; }, absl::Seconds(15)));
  CHECK(Eventually([&] { return EventFiles(hospital.dir() + "/drop") == 0; }, absl::Seconds(5)));
  CHECK(Admissions(hospital) == kDeaths);
}

}  // namespace
