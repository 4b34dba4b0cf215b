#include "version_dirs.hpp"

#include <algorithm>
#include <charconv>
#include <map>

namespace celsius::serving {

version_scan scan_versions(const std::filesystem::path& base_path) {
  version_scan scan;
  std::error_code ec;
  if (!std::filesystem::is_directory(base_path, ec)) return scan;
  scan.base_path_exists = true;
  std::map<std::int64_t, std::filesystem::path> found;
  std::vector<std::filesystem::path> names;
  for (const auto& entry : std::filesystem::directory_iterator(base_path, ec)) {
    std::error_code dir_ec;
    if (entry.is_directory(dir_ec)) names.push_back(entry.path());
  }
  std::sort(names.begin(), names.end());
  for (const auto& path : names) {
    const std::string name = path.filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    std::int64_t version = 0;
    const auto [end, err] = std::from_chars(name.data(), name.data() + name.size(), version);
    if (err != std::errc() || end != name.data() + name.size()) continue;
    found.emplace(version, path);  // keeps the first of equal numbers
  }
  for (auto& [version, path] : found) scan.versions.push_back({version, std::move(path)});
  return scan;
}

}  // namespace celsius::serving
