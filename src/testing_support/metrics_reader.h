// Reads values back from a prometheus::Registry (or any Collectable) in tests.
#ifndef HOSPITAL_SRC_TESTING_SUPPORT_METRICS_READER_H_
#define HOSPITAL_SRC_TESTING_SUPPORT_METRICS_READER_H_

#include <map>
#include <string>

#include <prometheus/collectable.h>

namespace testing_support {

// The value of the counter or gauge `name` whose labels include all of `labels` (for a
// histogram, its sample count). Sums over series when several match; 0 when none does.
double MetricValue(const prometheus::Collectable& source, const std::string& name,
                   const std::map<std::string, std::string>& labels);

}  // namespace testing_support

#endif  // HOSPITAL_SRC_TESTING_SUPPORT_METRICS_READER_H_
