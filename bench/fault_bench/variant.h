// The integration variants the benchmark compares: how the patients service reaches the morgue
// and the appointments service. Adding a variant is one entry in Variants() (variant.cc).
#ifndef HOSPITAL_BENCH_FAULT_BENCH_VARIANT_H_
#define HOSPITAL_BENCH_FAULT_BENCH_VARIANT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace fault_bench {

struct Variant {
  std::string name;     // "resilient"
  std::string summary;  // One line for the report.
  // Flags the patients service starts with, which configure the integration.
  std::vector<std::string> patients_flags;
  // Asynchronous: a nats-server with JetStream runs beside the services, and all three get
  // --death_workflow=async and its URL.
  bool asynchronous = false;
  // Runs only in the scenarios that name it (Scenario::runs_on): a policy built for one kind
  // of fault (hedging for a slow tail, throttling for overload) rather than a way to integrate.
  bool opt_in = false;
  // Every listener on mutual TLS (certificates from scripts/make-certs.sh, the bench a client
  // with a certificate of its own) and the production caller policies on morgue and
  // appointments: what TLS costs.
  bool tls = false;
};

// Every variant, in report order. Policy files are read from `policy_dir`.
std::vector<Variant> Variants(const std::string& policy_dir);

// The variants named in `names` (comma-separated), or INVALID_ARGUMENT naming the unknown one
// or a policy file that is missing.
absl::StatusOr<std::vector<Variant>> SelectVariants(const std::string& names,
                                                    const std::string& policy_dir);

}  // namespace fault_bench

#endif  // HOSPITAL_BENCH_FAULT_BENCH_VARIANT_H_
