#include "patients/death_workflow.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "server_kit/rpc_support.h"

namespace patients {

absl::StatusOr<v1::RecordDeathResponse> AnswerStandingDeath(
    BeginDeathResult& standing, const std::string& patient_id,
    prometheus::Family<prometheus::Counter>& deaths) {
  switch (standing.kind) {
    case BeginDeathResult::Kind::kAlreadyRecorded: {
      deaths.Add({{"result", "replayed"}}).Increment();
      v1::RecordDeathResponse replay = std::move(standing.recorded);
      replay.set_replayed(true);
      return replay;
    }
    case BeginDeathResult::Kind::kInProgress:
      deaths.Add({{"result", "in_progress"}}).Increment();
      return absl::AbortedError(absl::StrCat("the death of patient \"", patient_id,
                                             "\" is being recorded by another request; retry "
                                             "shortly"));
    case BeginDeathResult::Kind::kCompensationPending:
      deaths.Add({{"result", "in_progress"}}).Increment();
      return absl::UnavailableError(absl::StrCat(
          "an earlier attempt to record the death of patient \"", patient_id,
          "\" is still being undone in the morgue or appointments service; retry later"));
    case BeginDeathResult::Kind::kStarted:
      break;
  }
  return absl::InternalError("a death that was just started does not stand yet");
}

absl::StatusOr<CommittedDeath> CommitDeath(PatientsRepository& repository,
                                           const DeathRequest& request, bool with_event,
                                           absl::Time now,
                                           prometheus::Family<prometheus::Counter>& deaths) {
  absl::StatusOr<BeginDeathResult> recorded =
      repository.RecordDeathWithEvent(request.patient_id, server_kit::NewId(),
                                      request.time_of_death, request.cause, now, with_event);
  if (!recorded.ok()) {
    deaths.Add({{"result", "error"}}).Increment();
    return recorded.status();
  }
  CommittedDeath committed;
  if (recorded->kind != BeginDeathResult::Kind::kStarted) {
    // Only a synchronous workflow left pending before a switch of pattern can be in progress.
    ASSIGN_OR_RETURN(committed.response,
                     AnswerStandingDeath(*recorded, request.patient_id, deaths));
    return committed;
  }
  committed.new_death = true;
  committed.response = std::move(recorded->recorded);
  return committed;
}

}  // namespace patients
