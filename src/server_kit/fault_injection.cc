#include "server_kit/fault_injection.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/grpc_status.h"
#include "base/method_name.h"
#include "base/proto_duration.h"
#include "base/status.h"
#include "server_kit/log.h"
#include "server_kit/rpc_support.h"
#include "server_kit/serve.h"

namespace server_kit {
namespace {

// A rule as one line of JSON, for audit lines.
std::string FaultJson(const faults_v1::Fault& fault) {
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(fault, &json).ok()) return fault.id();
  return json;
}

constexpr absl::Duration kMaxDelay = absl::Hours(1);
// Operator surfaces are never faulted: an operator must be able to clear a fault, or open a
// breaker, whatever rules are in force.
constexpr absl::string_view kNeverFaulted[] = {"/grpc.", "/hospital.faults.v1.FaultInjection/",
                                               "/resilience.v1.ResilienceAdmin/"};

// Whether `pattern` ("*", "pkg.Service/*" or "pkg.Service/Method") covers `full_method`.
bool Matches(const std::string& pattern, absl::string_view full_method) {
  if (pattern == "*") return true;
  const std::optional<base::MethodName> rule = base::ParseMethodName(pattern);
  const std::optional<base::MethodName> call =
      base::ParseMethodName(std::string_view(full_method.data(), full_method.size()));
  return rule && call && rule->service == call->service &&
         (rule->method == "*" || rule->method == call->method);
}

absl::Status CheckDelay(const google::protobuf::Duration& value, absl::string_view field) {
  const absl::Duration duration = base::FromProtoDuration(value);
  if (duration < absl::ZeroDuration() || duration > kMaxDelay) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be 0s to 3600s, got ", absl::FormatDuration(duration)));
  }
  return absl::OkStatus();
}

absl::Status Validate(const faults_v1::Fault& fault) {
  if (auto s = ValidateId("fault.id", fault.id()); !s.ok()) return s;
  if (fault.kind_case() == faults_v1::Fault::KIND_NOT_SET) {
    return absl::InvalidArgumentError("fault: set one of abort, delay, hang or not_serving");
  }
  if (fault.kind_case() != faults_v1::Fault::kNotServing) {
    const std::string& method = fault.method();
    // Service and method names are protobuf identifiers ("pkg.v1.Service", "Method").
    const auto is_name = [](std::string_view name) {
      return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
      });
    };
    const std::optional<base::MethodName> name = base::ParseMethodName(method);
    if (method != "*" &&
        (!name || !is_name(name->service) || (name->method != "*" && !is_name(name->method)))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "fault.method: must be \"*\", \"package.Service/*\" or \"package.Service/Method\", "
          "got ",
          Quote(method)));
    }
  }
  // 0 is the field's default and means 100 (see faults.proto).
  if (!(fault.percentage() >= 0 && fault.percentage() <= 100)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fault.percentage: must be in (0, 100], or 0 for 100, got ", fault.percentage()));
  }
  if (fault.has_expire_after() &&
      base::FromProtoDuration(fault.expire_after()) <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("fault.expire_after: must be positive");
  }
  if (fault.has_abort()) {
    const std::optional<absl::StatusCode> code = base::StatusCodeFromName(fault.abort().code());
    if (!code || *code == absl::StatusCode::kOk) {
      return absl::InvalidArgumentError(
          absl::StrCat("fault.abort.code: must name an error code such as \"UNAVAILABLE\", got ",
                       Quote(fault.abort().code())));
    }
  }
  if (fault.has_delay()) {
    if (auto s = CheckDelay(fault.delay().fixed(), "fault.delay.fixed"); !s.ok()) return s;
    if (auto s = CheckDelay(fault.delay().jitter(), "fault.delay.jitter"); !s.ok()) return s;
  }
  return absl::OkStatus();
}

const char* KindName(FaultDecision::Kind kind) {
  switch (kind) {
    case FaultDecision::Kind::kAbort:
      return "abort";
    case FaultDecision::Kind::kDelay:
      return "delay";
    case FaultDecision::Kind::kHang:
      return "hang";
    case FaultDecision::Kind::kNone:
      break;
  }
  return "none";
}

class FaultInterceptor final : public grpc::experimental::Interceptor {
 public:
  FaultInterceptor(FaultInjector& injector, grpc::experimental::ServerRpcInfo* info)
      : injector_(injector), info_(info) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    // The request's metadata arrives before the handler runs (with the message, in the same
    // batch, on the sync server): decide there, and mark a failed call so that Serve (serve.h)
    // answers it without running the method.
    //
    // A unary call that arrives without its message is one gRPC answers itself (no thread free,
    // unparsable, no message: refused_calls.h): no handler will run, so there is nothing to
    // fault, and what gRPC reports must reach the caller. A delay or hang here would also hold
    // the very thread that refuses calls when all others are busy.
    const bool handler_will_run =
        info_->type() != grpc::experimental::ServerRpcInfo::Type::UNARY ||
        !methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) ||
        methods->GetRecvMessage() != nullptr;
    if (handler_will_run &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      Apply(*methods->GetRecvInitialMetadata());
    }
    // The injected status is also what is sent, whatever a handler that bypasses Serve returned.
    if (injected_ && methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      methods->ModifySendStatus(base::ToGrpcStatus(*injected_));
    }
    methods->Proceed();
  }

 private:
  void Apply(std::multimap<grpc::string_ref, grpc::string_ref>& metadata) {
    // Only the interceptor marks calls: drop whatever a client sent under the key.
    metadata.erase(grpc::string_ref(kInjectedFaultKey.data(), kInjectedFaultKey.size()));
    const FaultDecision decision = injector_.Decide(info_->method());
    grpc::ServerContextBase* context = info_->server_context();
    switch (decision.kind) {
      case FaultDecision::Kind::kNone:
        return;
      case FaultDecision::Kind::kDelay:
        WaitUntil(context, absl::Now() + decision.delay, injector_);
        return;
      case FaultDecision::Kind::kHang:
        WaitUntil(context, absl::InfiniteFuture(), injector_);
        Mark(metadata, absl::DeadlineExceededError("fault injected: hang"));
        return;
      case FaultDecision::Kind::kAbort:
        Mark(metadata, decision.abort_status);
        return;
    }
  }

  // Sleeps on the serving thread until `until`, the caller's deadline or its cancellation, or
  // until the server shuts down.
  static void WaitUntil(grpc::ServerContextBase* context, absl::Time until,
                        const FaultInjector& injector) {
    const auto deadline = context->deadline();
    if (deadline != std::chrono::system_clock::time_point::max()) {
      until = std::min(until, absl::FromChrono(deadline));
    }
    while (absl::Now() < until && !context->IsCancelled() && !injector.Releasing()) {
      absl::SleepFor(std::min(absl::Milliseconds(5), until - absl::Now()));
    }
  }

  void Mark(std::multimap<grpc::string_ref, grpc::string_ref>& metadata, absl::Status status) {
    mark_ = EncodeMarkedStatus(status);
    injected_ = std::move(status);
    // The map holds references: the strings live in this interceptor, which lives as long as the
    // call.
    metadata.emplace(grpc::string_ref(kInjectedFaultKey.data(), kInjectedFaultKey.size()),
                     grpc::string_ref(mark_.data(), mark_.size()));
  }

  FaultInjector& injector_;
  grpc::experimental::ServerRpcInfo* const info_;
  std::optional<absl::Status> injected_;
  std::string mark_;
};

}  // namespace

FaultInjector::FaultInjector(base::Environment environment, prometheus::Registry& metrics)
    : environment_(environment),
      injected_(prometheus::BuildCounter()
                    .Name("hospital_faults_injected_total")
                    .Help("Calls that received an injected fault, by kind (abort, delay, hang).")
                    .Register(metrics)),
      active_(prometheus::BuildGauge()
                  .Name("hospital_faults_active")
                  .Help("Fault rules in force, including not_serving.")
                  .Register(metrics)
                  .Add({})) {}

absl::StatusOr<faults_v1::Fault> FaultInjector::Set(faults_v1::Fault fault) {
  if (fault.id().empty()) fault.set_id(NewId());
  if (absl::Status status = Validate(fault); !status.ok()) return status;
  if (fault.percentage() == 0) fault.set_percentage(100);
  const absl::Time now = environment_.clock->Now();
  fault.clear_expire_time();
  if (fault.has_expire_after()) {
    *fault.mutable_expire_time() = ToProtoTime(now + base::FromProtoDuration(fault.expire_after()));
  }
  base::MutexLock lock(&mutex_);
  DropExpiredLocked(now);
  auto same = std::find_if(rules_.begin(), rules_.end(),
                           [&](const faults_v1::Fault& rule) { return rule.id() == fault.id(); });
  if (same != rules_.end()) {
    *same = fault;
  } else {
    rules_.push_back(fault);
  }
  active_.Set(static_cast<double>(rules_.size()));
  Log(LogLevel::kWarning, "fault_set", {{"id", fault.id()}, {"method", fault.method()}});
  return fault;
}

std::vector<faults_v1::Fault> FaultInjector::List() {
  base::MutexLock lock(&mutex_);
  DropExpiredLocked(environment_.clock->Now());
  return rules_;
}

int FaultInjector::Clear(const std::string& id) {
  base::MutexLock lock(&mutex_);
  const std::size_t before = rules_.size();
  rules_.erase(
      std::remove_if(rules_.begin(), rules_.end(),
                     [&](const faults_v1::Fault& rule) { return id.empty() || rule.id() == id; }),
      rules_.end());
  active_.Set(static_cast<double>(rules_.size()));
  return static_cast<int>(before - rules_.size());
}

void FaultInjector::DropExpiredLocked(absl::Time now) {
  const std::size_t before = rules_.size();
  rules_.erase(std::remove_if(rules_.begin(), rules_.end(),
                              [&](const faults_v1::Fault& rule) {
                                return rule.has_expire_time() &&
                                       FromProtoTime(rule.expire_time()) <= now;
                              }),
               rules_.end());
  if (rules_.size() != before) active_.Set(static_cast<double>(rules_.size()));
}

FaultDecision FaultInjector::Decide(absl::string_view full_method) {
  FaultDecision decision;
  for (absl::string_view prefix : kNeverFaulted) {
    if (absl::StartsWith(full_method, prefix)) return decision;
  }
  {
    base::MutexLock lock(&mutex_);
    if (rules_.empty()) return decision;
    DropExpiredLocked(environment_.clock->Now());
    for (const faults_v1::Fault& rule : rules_) {
      if (rule.has_not_serving() || !Matches(rule.method(), full_method)) continue;
      if (environment_.random->Uniform01() * 100 >= rule.percentage()) return decision;
      switch (rule.kind_case()) {
        case faults_v1::Fault::kAbort:
          decision.kind = FaultDecision::Kind::kAbort;
          decision.abort_status = absl::Status(
              *base::StatusCodeFromName(rule.abort().code()),
              rule.abort().message().empty() ? "fault injected" : rule.abort().message());
          break;
        case faults_v1::Fault::kDelay:
          decision.kind = FaultDecision::Kind::kDelay;
          decision.delay =
              base::FromProtoDuration(rule.delay().fixed()) +
              base::FromProtoDuration(rule.delay().jitter()) * environment_.random->Uniform01();
          break;
        case faults_v1::Fault::kHang:
          decision.kind = FaultDecision::Kind::kHang;
          break;
        default:
          break;
      }
      break;
    }
  }
  if (decision.kind != FaultDecision::Kind::kNone) {
    injected_.Add({{"kind", KindName(decision.kind)}}).Increment();
  }
  return decision;
}

bool FaultInjector::NotServing() {
  base::MutexLock lock(&mutex_);
  DropExpiredLocked(environment_.clock->Now());
  return std::any_of(rules_.begin(), rules_.end(),
                     [](const faults_v1::Fault& rule) { return rule.has_not_serving(); });
}

absl::Status LoadFaultsFile(const std::string& path, FaultInjector& injector) {
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot read faults file ", path));
  std::stringstream text;
  text << file.rdbuf();
  faults_v1::FaultSet set;
  const auto parsed = google::protobuf::util::JsonStringToMessage(text.str(), &set);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a valid fault set: ", parsed.message().as_string()));
  }
  for (int i = 0; i < set.faults_size(); ++i) {
    absl::StatusOr<faults_v1::Fault> stored = injector.Set(set.faults(i));
    if (!stored.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": faults[", i, "]: ", stored.status().message()));
    }
  }
  return absl::OkStatus();
}

grpc::experimental::Interceptor* FaultInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new FaultInterceptor(injector_, info);
}

FaultInjectionService::FaultInjectionService(FaultInjector& injector,
                                             const AdminAuthenticator& authenticator)
    : injector_(injector), authenticator_(authenticator) {}

void FaultInjectionService::Audit(const grpc::ServerContext& context, absl::string_view identity,
                                  absl::string_view method, absl::string_view before,
                                  absl::string_view after) const {
  // A token itself is never written.
  Log(LogLevel::kWarning, "admin_change",
      {{"service", "hospital.faults.v1.FaultInjection"},
       {"method", std::string(method)},
       {"before", std::string(before)},
       {"after", std::string(after)},
       {"peer", context.peer()},
       {"identity", std::string(identity)}});
}

grpc::Status FaultInjectionService::SetFault(grpc::ServerContext* context,
                                             const faults_v1::SetFaultRequest* request,
                                             faults_v1::Fault* response) {
  return Serve(context, response, [&]() -> absl::StatusOr<faults_v1::Fault> {
    ASSIGN_OR_RETURN(const std::string identity, authenticator_.Authenticate(*context, "SetFault"));
    std::string before = "none";
    for (const faults_v1::Fault& rule : injector_.List()) {
      if (!request->fault().id().empty() && rule.id() == request->fault().id()) {
        before = FaultJson(rule);
      }
    }
    absl::StatusOr<faults_v1::Fault> set = injector_.Set(request->fault());
    if (set.ok()) Audit(*context, identity, "SetFault", before, FaultJson(*set));
    return set;
  });
}

grpc::Status FaultInjectionService::ListFaults(grpc::ServerContext* context,
                                               const faults_v1::ListFaultsRequest*,
                                               faults_v1::ListFaultsResponse* response) {
  return Serve(context, response, [&]() -> absl::StatusOr<faults_v1::ListFaultsResponse> {
    faults_v1::ListFaultsResponse listed;
    for (faults_v1::Fault& fault : injector_.List()) *listed.add_faults() = std::move(fault);
    return listed;
  });
}

grpc::Status FaultInjectionService::ClearFaults(grpc::ServerContext* context,
                                                const faults_v1::ClearFaultsRequest* request,
                                                faults_v1::ClearFaultsResponse* response) {
  return Serve(context, response, [&]() -> absl::StatusOr<faults_v1::ClearFaultsResponse> {
    ASSIGN_OR_RETURN(const std::string identity,
                     authenticator_.Authenticate(*context, "ClearFaults"));
    faults_v1::ClearFaultsResponse cleared;
    const std::size_t rules_before = injector_.List().size();
    cleared.set_cleared(injector_.Clear(request->id()));
    Audit(*context, identity, "ClearFaults", absl::StrCat(rules_before, " rules"),
          absl::StrCat(rules_before - static_cast<std::size_t>(cleared.cleared()), " rules (",
                       request->id().empty() ? "all" : absl::StrCat("id ", request->id()),
                       " cleared)"));
    return cleared;
  });
}

}  // namespace server_kit
