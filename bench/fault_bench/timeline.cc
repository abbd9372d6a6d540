#include "fault_bench/timeline.h"

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "base/grpc_status.h"
#include "hospital/faults/v1/faults.grpc.pb.h"
#include "testing_support/nats_server.h"
#include "testing_support/postgres_server.h"
#include "testing_support/service_process.h"

namespace fault_bench {
namespace {

namespace faults_v1 = hospital::faults::v1;

// A step on the broker: what the asynchronous variant's nats-server suffers. The synchronous
// variants have none, so it does nothing to them.
absl::Status ApplyBrokerStep(System& system, const Step& step) {
  testing_support::NatsServer* broker = system.broker();
  if (broker == nullptr) return absl::OkStatus();
  switch (step.kind) {
    case Step::Kind::kFreeze:
      broker->Freeze();
      return absl::OkStatus();
    case Step::Kind::kUnfreeze:
      broker->Unfreeze();
      return absl::OkStatus();
    case Step::Kind::kKill:
      broker->Kill();
      return absl::OkStatus();
    case Step::Kind::kRestart:
      return broker->Start();
    case Step::Kind::kSetFault:
    case Step::Kind::kClearFaults:
    case Step::Kind::kLockDatabase:
    case Step::Kind::kUnlockDatabase:
    case Step::Kind::kPromote:
      break;
  }
  return absl::InvalidArgumentError("the broker takes no fault rules and has no database");
}

// A step on the PostgreSQL servers of a variant on Storage::kPostgres: the primary is lost,
// then the operator promotes the synchronous standby (the services find it through their
// two-host URI). Scenario::RunsOn keeps such steps from the variants on SQLite.
absl::Status ApplyDatabaseStep(System& system, const Step& step) {
  if (system.primary() == nullptr) {
    return absl::FailedPreconditionError("a database step needs the services on PostgreSQL");
  }
  switch (step.kind) {
    case Step::Kind::kKill:
      system.primary()->Kill();
      return absl::OkStatus();
    case Step::Kind::kFreeze:
      system.primary()->Freeze();
      return absl::OkStatus();
    case Step::Kind::kUnfreeze:
      system.primary()->Unfreeze();
      return absl::OkStatus();
    case Step::Kind::kPromote:
      return system.standby()->Promote();
    case Step::Kind::kRestart:
    case Step::Kind::kSetFault:
    case Step::Kind::kClearFaults:
    case Step::Kind::kLockDatabase:
    case Step::Kind::kUnlockDatabase:
      break;
  }
  return absl::InvalidArgumentError(
      "the PostgreSQL servers can be killed, frozen, unfrozen and promoted, nothing else");
}

}  // namespace

absl::Status ApplyStep(System& system, const Step& step) {
  if (step.service == Service::kBroker) return ApplyBrokerStep(system, step);
  if (step.service == Service::kDatabase) return ApplyDatabaseStep(system, step);
  // The batch job exists in the shared-database variant only.
  if (step.service == Service::kSyncJob && system.sync_job() == nullptr) return absl::OkStatus();
  testing_support::ServiceProcess& process = system.process(step.service);
  switch (step.kind) {
    case Step::Kind::kLockDatabase:
      return system.LockDatabase(step.service);
    case Step::Kind::kUnlockDatabase:
      system.UnlockDatabase(step.service);
      return absl::OkStatus();
    case Step::Kind::kFreeze:
      process.Freeze();
      return absl::OkStatus();
    case Step::Kind::kUnfreeze:
      process.Unfreeze();
      return absl::OkStatus();
    case Step::Kind::kKill:
      process.Kill();
      return absl::OkStatus();
    case Step::Kind::kRestart:
      return process.Start();
    case Step::Kind::kPromote:
      return absl::InvalidArgumentError("only the PostgreSQL standby can be promoted");
    case Step::Kind::kSetFault:
    case Step::Kind::kClearFaults:
      break;
  }
  auto admin = faults_v1::FaultInjection::NewStub(system.AdminChannel(step.service));
  auto context = CallContext(absl::Seconds(5));
  context->AddMetadata("authorization", absl::StrCat("Bearer ", kBenchToken));
  if (step.kind == Step::Kind::kClearFaults) {
    faults_v1::ClearFaultsResponse cleared;
    return base::FromGrpcStatus(admin->ClearFaults(context.get(), {}, &cleared));
  }
  faults_v1::SetFaultRequest request;
  const auto parsed =
      google::protobuf::util::JsonStringToMessage(step.fault_json, request.mutable_fault());
  if (!parsed.ok()) return absl::InvalidArgumentError(parsed.message().as_string());
  faults_v1::Fault stored;
  return base::FromGrpcStatus(admin->SetFault(context.get(), request, &stored));
}

}  // namespace fault_bench
