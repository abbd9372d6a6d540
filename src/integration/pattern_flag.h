// --death_workflow, the flag that chooses the pattern, read by the factories and nowhere else.
#ifndef HOSPITAL_SRC_INTEGRATION_PATTERN_FLAG_H_
#define HOSPITAL_SRC_INTEGRATION_PATTERN_FLAG_H_

#include "absl/status/statusor.h"
#include "integration/pattern.h"

namespace integration {

// The pattern --death_workflow names; INVALID_ARGUMENT naming the flag for any other value.
absl::StatusOr<Pattern> PatternFromFlags();

}  // namespace integration

#endif  // HOSPITAL_SRC_INTEGRATION_PATTERN_FLAG_H_
