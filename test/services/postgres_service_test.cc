// A service on PostgreSQL as an operator meets it: a --db it cannot use stops it at start-up,
// naming the flag and never the password; a database that goes away at run time makes it
// NOT_SERVING and its writes UNAVAILABLE, and it serves again by itself when the database is
// back, with nothing it acknowledged lost.
#include <grpcpp/create_channel.h>

#include <fstream>
#include <sstream>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "hospital/morgue/v1/morgue.grpc.pb.h"
#include "server_kit/rpc_support.h"
#include "support/hospital_fixture.h"
#include "support/test_database.h"
#include "testing_support/postgres_server.h"
#include "testing_support/service_process.h"

namespace {

using testing_support::ContextWithTimeout;
using testing_support::Eventually;
using testing_support::PostgresServer;
using testing_support::Readiness;
using testing_support::ServiceProcess;
using testing_support::TempDir;
namespace morgue_v1 = hospital::morgue::v1;

ServiceProcess Service(const std::string& name, const TempDir& dir,
                       std::vector<std::string> flags) {
  flags.push_back("--health_check_interval=0.2s");
  return ServiceProcess(testing_support::BinaryPath(name), std::move(flags),
                        dir.path() + "/" + name + ".log", dir.path() + "/" + name + ".ports");
}

TEST_CASE("a PostgreSQL --db the service cannot use stops it at start-up, naming the flag",
          "[postgres]") {
  PostgresServer& server = testing_support::SharedPostgres();
  REQUIRE(server.CreateDatabase("startup").ok());
  TempDir dir;
  const std::string wrong_password = dir.path() + "/wrong-password";
  std::ofstream(wrong_password) << "wr0ng-s3cret\n";
  const std::string right_password = server.password_file();
  const std::string secret = testing_support::ReadPasswordFile(right_password);
  struct Case {
    std::vector<std::string> flags;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--db=postgresql://hospital@127.0.0.1:notaport/startup"},
       "--db: not a PostgreSQL connection URI"},
      {{"--db=postgresql://hospital:wr0ng-s3cret@127.0.0.1/startup"}, "--db: holds a password"},
      {{"--db=" + server.Uri("startup"), "--db_password_file=" + wrong_password},
       "password authentication failed"},
      {{"--db=" + server.Uri("no_such_database"), "--db_password_file=" + right_password},
       "does not exist"},
      {{absl::StrCat("--db=postgresql://hospital@127.0.0.1:", testing_support::FreePort(),
                     "/startup"),
        "--db_password_file=" + right_password},
       "--db: storage: cannot connect"},
      {{"--db=" + dir.path() + "/morgue.db", "--db_password_file=" + right_password},
       "--db_password_file: only for a PostgreSQL --db"},
      {{"--db=" + server.Uri("startup"), "--db_password_file=" + right_password,
        "--death_workflow=file_drop", "--file_drop_dir=" + dir.path()},
       "--death_workflow=file_drop is a shared-disk pattern"},
  };
  for (const Case& test : cases) {
    INFO(test.message);
    ServiceProcess morgue = Service("morgue", dir, test.flags);
    const absl::Status started = morgue.Start(absl::Seconds(30));
    CHECK_FALSE(started.ok());
    CHECK_THAT(std::string(started.message()), Catch::Contains(test.message));
    const std::string log = morgue.log();
    CHECK_THAT(log, !Catch::Contains("wr0ng-s3cret"));
    CHECK_THAT(log, !Catch::Contains(secret));
  }
}

grpc::Status Admit(morgue_v1::MorgueService::Stub& morgue, const std::string& patient_id,
                   absl::Duration timeout) {
  morgue_v1::AdmitDeceasedRequest request;
  request.set_patient_id(patient_id);
  request.set_workflow_id("w-" + patient_id);
  *request.mutable_time_of_death() = server_kit::ToProtoTime(absl::Now() - absl::Hours(1));
  request.set_cause("stroke");
  morgue_v1::AdmitDeceasedResponse response;
  auto context = ContextWithTimeout(timeout);
  return morgue.AdmitDeceased(context.get(), request, &response);
}

TEST_CASE(
    "while its database is away a service is not ready and refuses writes at once, "
    "then serves again by itself",
    "[postgres]") {
  PostgresServer server;
  REQUIRE(server.Start().ok());
  REQUIRE(server.CreateDatabase("morgue").ok());
  TempDir dir;
  ServiceProcess morgue =
      Service("morgue", dir,
              {"--db=" + server.Uri("morgue"), "--db_password_file=" + server.password_file(),
               "--db_statement_timeout=1s"});
  const absl::Status started = morgue.Start();
  INFO(started.ToString() << "\n" << morgue.log());
  REQUIRE(started.ok());
  auto stub = morgue_v1::MorgueService::NewStub(
      grpc::CreateChannel(morgue.address(), grpc::InsecureChannelCredentials()));
  CHECK(Eventually(
      [&] { return Readiness(morgue.address()) == grpc::health::v1::HealthCheckResponse::SERVING; },
      absl::Seconds(5)));
  REQUIRE(Admit(*stub, "p-before", absl::Seconds(5)).ok());

  server.Kill();
  CHECK(Eventually(
      [&] {
        return Readiness(morgue.address()) == grpc::health::v1::HealthCheckResponse::NOT_SERVING;
      },
      absl::Seconds(5)));
  const absl::Time start = absl::Now();
  const grpc::Status refused = Admit(*stub, "p-during", absl::Seconds(5));
  CHECK(refused.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(absl::Now() - start < absl::Seconds(4));  // Answered, not left to the deadline.
  CHECK_THAT(refused.error_message(), !Catch::Contains("INSERT"));

  REQUIRE(server.Start().ok());
  CHECK(Eventually(
      [&] { return Readiness(morgue.address()) == grpc::health::v1::HealthCheckResponse::SERVING; },
      absl::Seconds(10)));
  REQUIRE(Admit(*stub, "p-after", absl::Seconds(5)).ok());
  CHECK(testing_support::CountRowsOffline({server.Uri("morgue"), server.password_file()},
                                          "admissions") == 2);
  CHECK(morgue.Terminate() == 0);
}

}  // namespace
