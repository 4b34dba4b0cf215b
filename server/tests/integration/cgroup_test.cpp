// Issue 11, defect 9, on this machine's real cgroup v1 hierarchy: the service started as
// many event loops as CPUs although its cgroup had a CPU quota. The test creates a cgroup
// with a quota of half a CPU in the v1 `cpu` hierarchy, starts the real binary inside it
// and reads the thread count from its `listening` log line. It needs a writable v1 cpu
// hierarchy (root, cgroup v1 or hybrid); elsewhere it is skipped, saying why (the fake
// trees of the unit tests cover both versions everywhere).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "server_process.hpp"

namespace celsius::test {
namespace {

namespace fs = std::filesystem;

// The mount point of the cgroup v1 hierarchy with the cpu controller, from mountinfo.
std::optional<fs::path> cpu_v1_mount() {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mountinfo, line)) {
    const auto dash = line.find(" - cgroup ");
    if (dash == std::string::npos) continue;
    std::istringstream fields(line.substr(0, dash));
    std::string id, parent, device, root, mount_point;
    fields >> id >> parent >> device >> root >> mount_point;
    std::istringstream options(line.substr(line.rfind(' ') + 1));
    std::string option;
    while (std::getline(options, option, ',')) {
      if (option == "cpu" && root == "/") return fs::path(mount_point);
    }
  }
  return std::nullopt;
}

class cgroup_dir {
 public:
  explicit cgroup_dir(fs::path path) : path_(std::move(path)) {}
  ~cgroup_dir() {
    std::error_code ignored;
    fs::remove(path_, ignored);  // rmdir: the cgroup is empty once its process has exited
  }
  cgroup_dir(const cgroup_dir&) = delete;
  cgroup_dir& operator=(const cgroup_dir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

bool write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.flush();
  return static_cast<bool>(out);
}

TEST(cgroup, a_v1_cpu_quota_limits_the_event_loops) {
  const auto mount = cpu_v1_mount();
  if (!mount) GTEST_SKIP() << "no cgroup v1 cpu hierarchy on this machine";
  const fs::path path = *mount / ("celsius-test-" + std::to_string(getpid()));
  std::error_code ec;
  if (!fs::create_directory(path, ec)) GTEST_SKIP() << "cannot create " << path << ": " << ec.message();
  const cgroup_dir dir(path);
  ASSERT_TRUE(write_file(path / "cpu.cfs_period_us", "100000"));
  ASSERT_TRUE(write_file(path / "cpu.cfs_quota_us", "50000"));  // 500m, as in the chart

  // The shell moves itself into the cgroup, then becomes the server (same process).
  const std::string script = "echo $$ > '" + (path / "cgroup.procs").string() + "' && exec \"$0\" \"$@\"";
  server_process server(
      server_process::launch{{"/bin/sh", "-c", script, CELSIUS_SERVER_BINARY, "--host", "127.0.0.1", "--port", "0"},
                             R"re("msg":"listening".*"port":(\d+))re",
                             {}});
  EXPECT_EQ(server.find_in_log(R"re("threads":(\d+))re"), "1");
  EXPECT_EQ(server.stop(), 0);
}

}  // namespace
}  // namespace celsius::test
