#include "integration/file_drop/settings.h"

#include <filesystem>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"

ABSL_FLAG(std::string, file_drop_dir, "",
          "With --death_workflow=file_drop: the directory the three services share (created if "
          "missing)");
ABSL_FLAG(absl::Duration, file_drop_interval, absl::Seconds(1),
          "With --death_workflow=file_drop: how often files are written (patients) and read "
          "(morgue, appointments)");
ABSL_FLAG(std::vector<std::string>, file_drop_consumers,
          std::vector<std::string>({"morgue", "appointments"}),
          "With --death_workflow=file_drop (patients): the consumers whose done markers a file "
          "waits for before it is deleted");

namespace integration::file_drop {

absl::StatusOr<FileDropSettings> FileDropSettingsFromFlags() {
  FileDropSettings settings;
  settings.directory = absl::GetFlag(FLAGS_file_drop_dir);
  if (settings.directory.empty()) {
    return absl::InvalidArgumentError("--file_drop_dir: required with --death_workflow=file_drop");
  }
  std::error_code error;
  std::filesystem::create_directories(settings.directory, error);
  if (error) {
    return absl::InvalidArgumentError(absl::StrCat("--file_drop_dir: cannot create \"",
                                                   settings.directory, "\": ", error.message()));
  }
  settings.interval = absl::GetFlag(FLAGS_file_drop_interval);
  if (settings.interval < absl::Milliseconds(10)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--file_drop_interval: must be at least 10ms, "
                     "got ",
                     absl::FormatDuration(settings.interval)));
  }
  settings.consumers = absl::GetFlag(FLAGS_file_drop_consumers);
  if (settings.consumers.empty()) {
    return absl::InvalidArgumentError("--file_drop_consumers: name at least one");
  }
  return settings;
}
}  // namespace integration::file_drop
