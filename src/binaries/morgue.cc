// The morgue binary: the service's own code, with the consumer of the integration pattern
// --death_workflow names. `morgue --help` lists the flags.
#include "integration/consumer_factory.h"
#include "morgue/morgue_main.h"

int main(int argc, char** argv) {
  return morgue::MorgueMain(argc, argv, integration::SetUpEventConsumer);
}
