#include "integration/pattern_flag.h"

#include <string>

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, death_workflow, "sync",
          "How a recorded death reaches morgue and appointments: sync (patients calls both over "
          "gRPC and undoes its work if either fails), async (patients commits the death with an "
          "event in its outbox and publishes it to NATS JetStream; morgue and appointments "
          "consume it), shared_db_batch (patients records the death only; the batch_sync job "
          "copies it into the other two databases), direct_db_write (patients writes it into "
          "the other two databases itself) or file_drop (patients writes events as files into "
          "--file_drop_dir, which the other two poll). Give all three services the same value.");

namespace integration {

absl::StatusOr<Pattern> PatternFromFlags() {
  return ParsePattern(absl::GetFlag(FLAGS_death_workflow));
}

}  // namespace integration
