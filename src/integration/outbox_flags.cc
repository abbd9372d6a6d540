#include "integration/outbox_flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(absl::Duration, outbox_retention, absl::Minutes(5),
          "With --death_workflow=async or file_drop: how long published events stay in the "
          "outbox table before they are pruned; longer than what the broker can lose (its file "
          "store syncs every 2 minutes), so that --outbox_republish_since can send them again");

namespace integration {

messaging::OutboxRelayOptions OutboxRelayOptionsFromFlags() {
  messaging::OutboxRelayOptions options;
  options.retention = absl::GetFlag(FLAGS_outbox_retention);
  return options;
}

}  // namespace integration
