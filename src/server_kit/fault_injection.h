// Fault injection into the calls a service serves, modelled on Envoy's fault filter and Polly's
// chaos strategies: rules abort a share of calls with a status, delay them, make them hang until
// the caller's deadline, or turn health NOT_SERVING; each rule may expire by itself.
// See protos/hospital/faults/v1/faults.proto for the rule format.
//
//   FaultInjector injector(environment, registry);
//   LoadFaultsFile("faults.json", injector);                    // optional, at start-up
//   builder: AddInterceptorFactory(std::make_unique<FaultInterceptorFactory>(injector));
//   FaultInjectionService admin(injector, authenticator);        // only with --fault_admin
//
// How a fault reaches a call: the interceptor decides when the request has been received, before
// the method runs. A delay sleeps on the serving thread (the sync server's thread is busy, as it
// would be in a slow service). For an abort or a hang (after waiting for the caller's deadline),
// the method must not act: the interceptor marks the call (serve.h, kInjectedFaultKey), Serve
// answers a marked call with the injected status without running the method, and the status sent
// is replaced with the fault's. A test calls every method of every service under an abort rule
// and checks that none ran. Calls to grpc.* services, FaultInjection and ResilienceAdmin (operator
// surfaces) are never faulted.
//
// Thread-safe.
#ifndef HOSPITAL_SRC_SERVER_KIT_FAULT_INJECTION_H_
#define HOSPITAL_SRC_SERVER_KIT_FAULT_INJECTION_H_

#include <atomic>
#include <string>
#include <vector>

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/clock.h"
#include "base/sync.h"
#include "hospital/faults/v1/faults.grpc.pb.h"
#include "server_kit/admin_auth.h"

namespace server_kit {

namespace faults_v1 = hospital::faults::v1;

// What to do with one call.
struct FaultDecision {
  enum class Kind { kNone, kAbort, kDelay, kHang };
  Kind kind = Kind::kNone;
  absl::Status abort_status;
  absl::Duration delay = absl::ZeroDuration();
};

class FaultInjector final {
 public:
  // Uses the environment's clock (for expiry) and random source (for percentages and jitter).
  FaultInjector(base::Environment environment, prometheus::Registry& metrics);

  // Validates `fault` (INVALID_ARGUMENT naming the field) and adds it, replacing a rule with the
  // same id. Returns the stored rule, with its id and expire_time.
  absl::StatusOr<faults_v1::Fault> Set(faults_v1::Fault fault);
  // The rules still active.
  std::vector<faults_v1::Fault> List();
  // Removes the rule `id`, or every rule when `id` is empty; returns how many went.
  int Clear(const std::string& id);

  // Decides the fate of a call of `full_method` ("/package.Service/Method"): the first active
  // rule that matches decides, with its percentage.
  FaultDecision Decide(absl::string_view full_method);
  // Whether a NotServing rule is active.
  bool NotServing();
  // Ends every injected wait now and any later one at once (a hung call gets its
  // DEADLINE_EXCEEDED, a delayed one runs): called when the server starts shutting down. A
  // hung call does not notice that its client went away (the interceptor waits before the
  // server watches for cancellation), and would otherwise hold the drain until its deadline.
  void ReleaseWaits() { releasing_.store(true); }
  bool Releasing() const { return releasing_.load(); }

 private:
  void DropExpiredLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const base::Environment environment_;
  prometheus::Family<prometheus::Counter>& injected_;
  prometheus::Gauge& active_;
  base::Mutex mutex_;
  std::vector<faults_v1::Fault> rules_ ABSL_GUARDED_BY(mutex_);
  std::atomic<bool> releasing_{false};
};

// Reads a FaultSet as JSON from `path` and sets each rule. The error names the file and field.
absl::Status LoadFaultsFile(const std::string& path, FaultInjector& injector);

// The server interceptor that applies the injector's decisions.
class FaultInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit FaultInterceptorFactory(FaultInjector& injector) : injector_(injector) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  FaultInjector& injector_;
};

// hospital.faults.v1.FaultInjection, for the admin listener: SetFault and ClearFaults need
// the credentials `authenticator` checks (admin_auth.h); ListFaults is open to whoever reaches
// the listener.
class FaultInjectionService final : public faults_v1::FaultInjection::Service {
 public:
  // Both must outlive the service.
  FaultInjectionService(FaultInjector& injector, const AdminAuthenticator& authenticator);

  grpc::Status SetFault(grpc::ServerContext* context, const faults_v1::SetFaultRequest* request,
                        faults_v1::Fault* response) override;
  grpc::Status ListFaults(grpc::ServerContext* context, const faults_v1::ListFaultsRequest* request,
                          faults_v1::ListFaultsResponse* response) override;
  grpc::Status ClearFaults(grpc::ServerContext* context,
                           const faults_v1::ClearFaultsRequest* request,
                           faults_v1::ClearFaultsResponse* response) override;

 private:
  // Writes the audit line of a change: who (peer, identity), what, before, after.
  void Audit(const grpc::ServerContext& context, absl::string_view identity,
             absl::string_view method, absl::string_view before, absl::string_view after) const;

  FaultInjector& injector_;
  const AdminAuthenticator& authenticator_;
};

}  // namespace server_kit

#endif  // HOSPITAL_SRC_SERVER_KIT_FAULT_INJECTION_H_
