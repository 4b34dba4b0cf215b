#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace celsius::serving {

struct version_dir {
  std::int64_t version = 0;
  std::filesystem::path path;
};

struct version_scan {
  bool base_path_exists = false;
  std::vector<version_dir> versions;  // increasing version
};

// The version folders under a model base path, as TF Serving's FileSystemStoragePathSource
// reads them: subdirectories whose whole name is a decimal number that fits int64 (leading
// zeros allowed, "007" is version 7); anything else is ignored. When two names denote the
// same number, the first in name order is taken.
version_scan scan_versions(const std::filesystem::path& base_path);

}  // namespace celsius::serving
