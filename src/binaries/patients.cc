// The patients binary: the service's own code, with the module of the integration pattern
// --death_workflow names. `patients --help` lists the flags.
#include "integration/producer_factory.h"
#include "patients/patients_main.h"

int main(int argc, char** argv) {
  return patients::PatientsMain(argc, argv, integration::SetUpDeathWorkflow);
}
