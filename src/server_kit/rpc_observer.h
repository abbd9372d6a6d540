// A server interceptor that counts every RPC by method and status code, times it, and logs the
// failed ones (or all, if asked), as one structured line each.
//
// Series, named as in go-grpc-prometheus so that existing dashboards work:
//   grpc_server_started_total{grpc_service,grpc_method}
//   grpc_server_handled_total{grpc_service,grpc_method,grpc_code}
//   grpc_server_handling_seconds{grpc_service,grpc_method}   (histogram)
// Methods not in the binary's descriptor pool are counted as grpc_service="unknown", so a client
// cannot grow the label set.
#ifndef HOSPITAL_SRC_SERVER_KIT_RPC_OBSERVER_H_
#define HOSPITAL_SRC_SERVER_KIT_RPC_OBSERVER_H_

#include <atomic>
#include <memory>
#include <string>

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace server_kit {

enum class RpcLogging { kNone, kErrors, kAll };

class RpcObserverFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  RpcObserverFactory(prometheus::Registry& registry, RpcLogging logging);

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

  // The label values of a method: its service and name if the binary knows it, else
  // "unknown" for both.
  struct Labels {
    std::string service;
    std::string method;
  };
  // Counts a started RPC and returns its labels, for Record. Public for the interceptor.
  Labels RecordStart(const std::string& full_method);
  // Records one finished RPC.
  void Record(const std::string& full_method, const Labels& labels, const grpc::Status& status,
              double seconds);
  // Calls started and not yet finished (their interceptor not yet destroyed).
  int in_flight() const { return in_flight_.load(std::memory_order_acquire); }
  void CallStarted() { in_flight_.fetch_add(1, std::memory_order_relaxed); }
  void CallEnded() { in_flight_.fetch_sub(1, std::memory_order_release); }

 private:
  prometheus::Family<prometheus::Counter>& started_;
  prometheus::Family<prometheus::Counter>& handled_;
  prometheus::Family<prometheus::Histogram>& handling_seconds_;
  const RpcLogging logging_;
  std::atomic<int> in_flight_{0};
};

// Parses "error", "all" or "none".
bool ParseRpcLogging(const std::string& text, RpcLogging& out);

}  // namespace server_kit

#endif  // HOSPITAL_SRC_SERVER_KIT_RPC_OBSERVER_H_
