// The file_drop module's consumer half, in the morgue and the appointments service. Needs: the
// directory the three services share (--file_drop_dir; settings.h).
//
// Every --file_drop_interval the consumer applies the files it has not yet marked done, in name
// order, each in one inbox transaction (file_drop.h).
#ifndef HOSPITAL_SRC_INTEGRATION_FILE_DROP_CONSUMER_H_
#define HOSPITAL_SRC_INTEGRATION_FILE_DROP_CONSUMER_H_

#include "absl/status/status.h"
#include "integration/consumer_context.h"

namespace integration::file_drop {

// Starts polling (stopped at shutdown). INVALID_ARGUMENT naming the flag that is wrong.
absl::Status SetUpConsumer(ConsumerContext& context);

}  // namespace integration::file_drop

#endif  // HOSPITAL_SRC_INTEGRATION_FILE_DROP_CONSUMER_H_
