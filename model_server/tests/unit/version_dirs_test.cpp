// Version folders as FileSystemStoragePathSource reads them.
#include "version_dirs.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

namespace celsius::serving {
namespace {

TEST(version_dirs, numeric_directories_only) {
  const auto base = std::filesystem::temp_directory_path() / ("celsius-versions-" + std::to_string(::getpid()));
  std::filesystem::remove_all(base);
  EXPECT_FALSE(scan_versions(base).base_path_exists);
  for (const char* d : {"1", "10", "007", "2a", "-3", "tmp-4", "99999999999999999999999"}) {
    std::filesystem::create_directories(base / d);
  }
  std::ofstream(base / "12") << "a file, not a version";
  const auto scan = scan_versions(base);
  EXPECT_TRUE(scan.base_path_exists);
  ASSERT_EQ(scan.versions.size(), 3u);
  EXPECT_EQ(scan.versions[0].version, 1);
  EXPECT_EQ(scan.versions[1].version, 7);
  EXPECT_EQ(scan.versions[1].path.filename(), "007");
  EXPECT_EQ(scan.versions[2].version, 10);
  std::filesystem::remove_all(base);
}

}  // namespace
}  // namespace celsius::serving
