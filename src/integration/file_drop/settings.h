// The file drop's flags, shared by its producer (patients) and its consumers (morgue,
// appointments):
//   --file_drop_dir        the directory the three services share (created if missing)
//   --file_drop_interval   how often files are written and read
//   --file_drop_consumers  (patients) the consumers whose done markers a file waits for
#ifndef HOSPITAL_SRC_INTEGRATION_FILE_DROP_SETTINGS_H_
#define HOSPITAL_SRC_INTEGRATION_FILE_DROP_SETTINGS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace integration::file_drop {

struct FileDropSettings {
  std::string directory;
  absl::Duration interval;
  std::vector<std::string> consumers;
};

// The flags above, the directory created; INVALID_ARGUMENT naming the flag that is wrong.
absl::StatusOr<FileDropSettings> FileDropSettingsFromFlags();

}  // namespace integration::file_drop

#endif  // HOSPITAL_SRC_INTEGRATION_FILE_DROP_SETTINGS_H_
