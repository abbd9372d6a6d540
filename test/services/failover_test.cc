// The services ride out the loss of their PostgreSQL primary: a primary and a synchronous
// standby (streaming replication), the services on a multi-host URI with
// target_session_attrs=read-write, the primary killed -9 under load and the standby promoted a
// second later, as an operator (or CloudNativePG) would. Nothing acknowledged is lost, every
// call in the gap is answered within its deadline, and writes are accepted again soon after the
// promotion. (The benchmark's db_primary_killed measures the same at a fixed rate.)
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdio>
#include <thread>

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "support/hospital_fixture.h"
#include "support/test_database.h"
#include "testing_support/postgres_server.h"

namespace {

using testing_support::Broker;
using testing_support::DatabaseLocation;
using testing_support::Eventually;
using testing_support::Hospital;
using testing_support::HospitalOptions;
using testing_support::PostgresServer;
namespace patients_v1 = hospital::patients::v1;

// A primary with a synchronous standby, and a database per service on them.
struct ReplicatedPair {
  ReplicatedPair() {
    const absl::Status started = primary.Start();
    INFO(started.ToString() << primary.log());
    REQUIRE(started.ok());
    const absl::Status made = standby.MakeStandbyOf(primary, "standby1");
    INFO(made.ToString());
    REQUIRE(made.ok());
    const absl::Status following = standby.Start();
    INFO(following.ToString() << standby.log());
    REQUIRE(following.ok());
    const absl::Status synchronous = primary.RequireSynchronousStandby("standby1");
    INFO(synchronous.ToString() << primary.log());
    REQUIRE(synchronous.ok());
    for (const char* name : {"patients", "morgue", "appointments"}) {
      REQUIRE(primary.CreateDatabase(name).ok());
    }
  }
  // Both hosts; libpq picks the one that takes writes.
  DatabaseLocation Location(const std::string& service) const {
    return {absl::StrCat("postgresql://", PostgresServer::kUser, "@127.0.0.1:", primary.port(),
                         ",127.0.0.1:", standby.port(), "/", service,
                         "?target_session_attrs=read-write&connect_timeout=2"),
            primary.password_file()};
  }

  PostgresServer primary;
  PostgresServer standby;
};

struct Outcome {
  std::vector<std::string> acknowledged;
  int failed = 0;
  absl::Duration longest_call;
  // The first death acknowledged after the promotion, measured from the promotion.
  std::optional<absl::Duration> writes_back_after;
};

// Records deaths of p-0, p-1, ... one after another for `duration`, each within `deadline`,
// while another thread kills the primary after `kill_after` and promotes the standby a second
// later.
Outcome RecordThroughFailover(Hospital& hospital, ReplicatedPair& pair, int patients,
                              absl::Duration duration, absl::Duration kill_after) {
  constexpr absl::Duration kDeadline = absl::Seconds(3);
  std::atomic<bool> promoted{false};
  absl::Time promote_time;
  absl::Status promotion;
  std::thread operator_thread([&] {
    absl::SleepFor(kill_after);
    pair.primary.Kill();
    absl::SleepFor(absl::Seconds(1));
    promote_time = absl::Now();
    promotion = pair.standby.Promote();
    promoted = true;
  });
  Outcome outcome;
  const absl::Time end = absl::Now() + duration;
  for (int i = 0; i < patients && absl::Now() < end; ++i) {
    const std::string patient_id = absl::StrCat("p-", i);
    patients_v1::RecordDeathResponse response;
    const absl::Time start = absl::Now();
    const grpc::Status status = hospital.RecordDeath(patient_id, &response, kDeadline);
    const absl::Duration took = absl::Now() - start;
    outcome.longest_call = std::max(outcome.longest_call, took);
    if (status.ok()) {
      outcome.acknowledged.push_back(patient_id);
      if (promoted && !outcome.writes_back_after) {
        outcome.writes_back_after = start - promote_time;
      }
    } else {
      ++outcome.failed;
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
  operator_thread.join();
  INFO(promotion.ToString());
  REQUIRE(promotion.ok());
  return outcome;
}

void CheckFailover(Hospital& hospital, const Outcome& outcome) {
  INFO("acknowledged " << outcome.acknowledged.size() << ", failed " << outcome.failed
                       << ", longest call " << absl::FormatDuration(outcome.longest_call));
  std::printf(
      "failover: %zu acknowledged, %d failed, longest call %s, writes back %s after "
      "the promotion\n",
      outcome.acknowledged.size(), outcome.failed,
      absl::FormatDuration(outcome.longest_call).c_str(),
      outcome.writes_back_after ? absl::FormatDuration(*outcome.writes_back_after).c_str()
                                : "never");
  CHECK(outcome.acknowledged.size() > 10);
  CHECK(outcome.failed > 0);  // The gap was seen...
  REQUIRE(outcome.writes_back_after.has_value());
  // ...and writes came back (a death is a few ms; the wait is the reconnection).
  CHECK(*outcome.writes_back_after < absl::Seconds(10));
  CHECK(outcome.longest_call < absl::Seconds(3) + absl::Milliseconds(500));  // None hung.
  // Every acknowledged death is on the new primary, in all three services.
  for (const std::string& patient_id : outcome.acknowledged) {
    INFO(patient_id);
    CHECK(Eventually([&] { return hospital.FindAdmission(patient_id).has_value(); },
                     absl::Seconds(10)));
    patients_v1::GetPatientRequest request;
    request.set_patient_id(patient_id);
    patients_v1::Patient patient;
    auto context = testing_support::ContextWithTimeout(absl::Seconds(5));
    REQUIRE(hospital.patients().GetPatient(context.get(), request, &patient).ok());
    CHECK(patient.status() == patients_v1::DECEASED);
  }
}

HospitalOptions OnPair(const ReplicatedPair& pair) {
  HospitalOptions options;
  options.engine = server_kit::Engine::kPostgres;
  options.database_location = [&pair](const std::string& service) {
    return pair.Location(service);
  };
  options.every_service_flags = {"--db_statement_timeout=2s"};
  return options;
}

TEST_CASE(
    "sync on PostgreSQL: the primary killed under load, the standby promoted, nothing "
    "acknowledged lost",
    "[failover]") {
  ReplicatedPair pair;
  Hospital hospital(OnPair(pair));
  hospital.Start();
  constexpr int kPatients = 400;
  for (int i = 0; i < kPatients; ++i) hospital.CreatePatient(absl::StrCat("p-", i));
  const Outcome outcome =
      RecordThroughFailover(hospital, pair, kPatients, absl::Seconds(8), absl::Seconds(1));
  CheckFailover(hospital, outcome);
}

TEST_CASE(
    "async on PostgreSQL: the primary killed under load, the standby promoted, every "
    "acknowledged death delivered",
    "[failover]") {
  ReplicatedPair pair;
  Broker broker;
  HospitalOptions options = OnPair(pair);
  options.nats_url = broker.server.url();
  Hospital hospital(options);
  hospital.Start();
  constexpr int kPatients = 600;
  for (int i = 0; i < kPatients; ++i) hospital.CreatePatient(absl::StrCat("p-", i));
  const Outcome outcome =
      RecordThroughFailover(hospital, pair, kPatients, absl::Seconds(8), absl::Seconds(1));
  CheckFailover(hospital, outcome);
}

}  // namespace
