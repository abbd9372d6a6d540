// google.protobuf.Duration as absl::Duration, for the JSON configurations (policies, fault rules)
// that carry durations.
#ifndef HOSPITAL_SRC_BASE_PROTO_DURATION_H_
#define HOSPITAL_SRC_BASE_PROTO_DURATION_H_

#include <google/protobuf/duration.pb.h>

#include "absl/time/time.h"

namespace base {

inline absl::Duration FromProtoDuration(const google::protobuf::Duration& duration) {
  return absl::Seconds(duration.seconds()) + absl::Nanoseconds(duration.nanos());
}

}  // namespace base

#endif  // HOSPITAL_SRC_BASE_PROTO_DURATION_H_
