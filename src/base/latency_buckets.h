// The histogram boundaries, in seconds, that every latency in this code base is recorded with, so
// that client-side (src/resilience) and server-side (server plumbing) latencies of one call can
// be compared bucket by bucket.
#ifndef HOSPITAL_SRC_BASE_LATENCY_BUCKETS_H_
#define HOSPITAL_SRC_BASE_LATENCY_BUCKETS_H_

#include <array>

namespace base {

inline constexpr std::array<double, 14> kLatencyBucketsSeconds = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

}  // namespace base

#endif  // HOSPITAL_SRC_BASE_LATENCY_BUCKETS_H_
