#include "config.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace celsius {
namespace {

struct parsed {
  config_result result;
  std::string out, err;
};

parsed parse(std::vector<const char*> args) {
  args.insert(args.begin(), "celsius-server");
  std::ostringstream out, err;
  parsed p{parse_config(static_cast<int>(args.size()), args.data(), out, err), {}, {}};
  p.out = out.str();
  p.err = err.str();
  return p;
}

// Sets an environment variable for the scope of a test.
struct scoped_env {
  scoped_env(const char* name, const char* value) : name_(name) { setenv(name, value, 1); }
  ~scoped_env() { unsetenv(name_); }
  const char* name_;
};

TEST(config, defaults) {
  const auto p = parse({});
  ASSERT_TRUE(p.result.cfg.has_value());
  const config& c = *p.result.cfg;
  EXPECT_EQ(c.host, "0.0.0.0");
  EXPECT_EQ(c.port, 8000);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.max_body_bytes, 1048576u);
  EXPECT_EQ(c.max_batch, 10000u);
  EXPECT_EQ(c.shutdown_grace_ms, 10000u);
  EXPECT_GE(c.threads, 1u);
  EXPECT_EQ(c.threads, default_threads());
}

TEST(config, flags) {
  const auto p = parse({"--host", "127.0.0.1", "--port", "0", "--threads", "3", "--log-level", "warn",
                        "--max-body-bytes", "2048", "--max-batch", "7", "--shutdown-grace-ms", "50"});
  ASSERT_TRUE(p.result.cfg.has_value()) << p.err;
  const config& c = *p.result.cfg;
  EXPECT_EQ(c.host, "127.0.0.1");
  EXPECT_EQ(c.port, 0);
  EXPECT_EQ(c.threads, 3u);
  EXPECT_EQ(c.log_level, "warn");
  EXPECT_EQ(c.max_body_bytes, 2048u);
  EXPECT_EQ(c.max_batch, 7u);
  EXPECT_EQ(c.shutdown_grace_ms, 50u);
}

TEST(config, environment_variables_and_flags_win) {
  const scoped_env port("CELSIUS_PORT", "9001");
  const scoped_env batch("CELSIUS_MAX_BATCH", "12");
  const scoped_env threads("CELSIUS_THREADS", "2");
  auto p = parse({});
  ASSERT_TRUE(p.result.cfg.has_value()) << p.err;
  EXPECT_EQ(p.result.cfg->port, 9001);
  EXPECT_EQ(p.result.cfg->max_batch, 12u);
  EXPECT_EQ(p.result.cfg->threads, 2u);
  p = parse({"--port", "9002"});
  ASSERT_TRUE(p.result.cfg.has_value());
  EXPECT_EQ(p.result.cfg->port, 9002);
}

TEST(config, invalid_values_fail_with_a_message) {
  for (const auto& args : std::vector<std::vector<const char*>>{{"--port", "70000"},
                                                                {"--port", "http"},
                                                                {"--threads", "0"},
                                                                {"--log-level", "loud"},
                                                                {"--max-batch", "0"},
                                                                {"--model-server", "localhost:8500"},
                                                                {"--model-server", "grpc://localhost"},
                                                                {"--model-version", "0"},
                                                                {"--model-name", "a/b"},
                                                                {"--model-timeout-ms", "0"},
                                                                {"--model-batch-max-values", "-1"},
                                                                {"--model-batch-timeout-us", "1000001"},
                                                                {"--model-batch-max-inflight", "0"},
                                                                {"--unknown"}}) {
    const auto p = parse(args);
    EXPECT_FALSE(p.result.cfg.has_value()) << args[0];
    EXPECT_NE(p.result.exit_code, 0);
    EXPECT_FALSE(p.err.empty());
  }
  const scoped_env bad("CELSIUS_PORT", "not-a-port");
  EXPECT_FALSE(parse({}).result.cfg.has_value());
}

TEST(config, model_server_flags_and_environment) {
  const auto none = parse({});
  ASSERT_TRUE(none.result.cfg);
  EXPECT_TRUE(none.result.cfg->model_server.empty());
  EXPECT_EQ(none.result.cfg->model_name, "f2c");
  EXPECT_FALSE(none.result.cfg->model_version);
  EXPECT_EQ(none.result.cfg->model_timeout_ms, 1000u);

  const auto p = parse({"--model-server", "http://tf-serving:8501", "--model-name", "other", "--model-version", "3",
                        "--model-timeout-ms", "250"});
  ASSERT_TRUE(p.result.cfg) << p.err;
  EXPECT_EQ(p.result.cfg->model_server, "http://tf-serving:8501");
  EXPECT_EQ(p.result.cfg->model_name, "other");
  EXPECT_EQ(p.result.cfg->model_version, 3);
  EXPECT_EQ(p.result.cfg->model_timeout_ms, 250u);

  const scoped_env env("CELSIUS_MODEL_SERVER", "grpc://10.0.0.7:8500");
  EXPECT_EQ(parse({}).result.cfg->model_server, "grpc://10.0.0.7:8500");
  EXPECT_EQ(parse({"--model-server", "grpc://a:1"}).result.cfg->model_server, "grpc://a:1");
}

TEST(config, model_server_addresses) {
  std::string error;
  auto a = parse_model_server("grpc://tf-serving.default.svc:8500", error);
  ASSERT_TRUE(a) << error;
  EXPECT_EQ(a->scheme, model_server_address::protocol::grpc);
  EXPECT_EQ(a->host, "tf-serving.default.svc");
  EXPECT_EQ(a->port, 8500);
  a = parse_model_server("http://127.0.0.1:8501/", error);
  ASSERT_TRUE(a) << error;
  EXPECT_EQ(a->scheme, model_server_address::protocol::rest);
  EXPECT_EQ(a->port, 8501);
  a = parse_model_server("grpc://[::1]:8500", error);
  ASSERT_TRUE(a) << error;
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(host_port(a->host, a->port), "[::1]:8500");
  EXPECT_EQ(host_port("localhost", 1), "localhost:1");
  for (const char* bad : {"", "localhost:8500", "https://a:1", "grpc://a", "grpc://:1", "grpc://a:0", "grpc://a:65536",
                          "grpc://a:1x", "grpc://a/b:1", "grpc://[::1]8500", "grpc://::1:8500", "http://u@h:1"}) {
    error.clear();
    EXPECT_FALSE(parse_model_server(bad, error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
}

TEST(config, model_batch_flags_and_environment) {
  const config defaults;
  const auto none = parse({});
  ASSERT_TRUE(none.result.cfg);
  EXPECT_EQ(none.result.cfg->model_batch_max_values, defaults.model_batch_max_values);
  EXPECT_EQ(none.result.cfg->model_batch_timeout_us, defaults.model_batch_timeout_us);
  EXPECT_EQ(none.result.cfg->model_batch_max_inflight, defaults.model_batch_max_inflight);
  const auto p =
      parse({"--model-batch-max-values", "0", "--model-batch-timeout-us", "250", "--model-batch-max-inflight", "8"});
  ASSERT_TRUE(p.result.cfg) << p.err;
  EXPECT_EQ(p.result.cfg->model_batch_max_values, 0u);  // off
  EXPECT_EQ(p.result.cfg->model_batch_timeout_us, 250u);
  EXPECT_EQ(p.result.cfg->model_batch_max_inflight, 8u);
  const scoped_env values("CELSIUS_MODEL_BATCH_MAX_VALUES", "1000");
  const scoped_env timeout("CELSIUS_MODEL_BATCH_TIMEOUT_US", "100");
  const scoped_env inflight("CELSIUS_MODEL_BATCH_MAX_INFLIGHT", "3");
  const auto e = parse({"--model-batch-max-inflight", "5"});
  ASSERT_TRUE(e.result.cfg) << e.err;
  EXPECT_EQ(e.result.cfg->model_batch_max_values, 1000u);
  EXPECT_EQ(e.result.cfg->model_batch_timeout_us, 100u);
  EXPECT_EQ(e.result.cfg->model_batch_max_inflight, 5u);  // the command line wins
}

TEST(config, help_lists_every_flag_and_its_environment_variable) {
  const auto p = parse({"--help"});
  EXPECT_FALSE(p.result.cfg.has_value());
  EXPECT_EQ(p.result.exit_code, 0);
  for (const char* flag :
       {"--host", "--port", "--threads", "--log-level", "--max-body-bytes", "--max-batch", "--shutdown-grace-ms",
        "--model-server", "--model-name", "--model-version", "--model-timeout-ms", "--model-batch-max-values",
        "--model-batch-timeout-us", "--model-batch-max-inflight", "CELSIUS_PORT", "CELSIUS_MAX_BODY_BYTES",
        "CELSIUS_MODEL_SERVER", "CELSIUS_MODEL_BATCH_MAX_VALUES"}) {
    EXPECT_NE(p.out.find(flag), std::string::npos) << flag;
  }
}

TEST(config, connection_lifetime_flags) {
  const auto defaults = parse({});
  ASSERT_TRUE(defaults.result.cfg);
  EXPECT_EQ(defaults.result.cfg->shutdown_drain_ms, 5000u);
  EXPECT_EQ(defaults.result.cfg->keepalive_requests, 1000u);
  EXPECT_EQ(defaults.result.cfg->keepalive_time_ms, 30000u);
  const auto p = parse({"--shutdown-drain-ms", "0", "--keepalive-requests", "0", "--keepalive-time-ms", "250"});
  ASSERT_TRUE(p.result.cfg) << p.err;
  EXPECT_EQ(p.result.cfg->shutdown_drain_ms, 0u);
  EXPECT_EQ(p.result.cfg->keepalive_requests, 0u);
  EXPECT_EQ(p.result.cfg->keepalive_time_ms, 250u);
  const scoped_env drain("CELSIUS_SHUTDOWN_DRAIN_MS", "1500");
  const scoped_env requests("CELSIUS_KEEPALIVE_REQUESTS", "7");
  const scoped_env age("CELSIUS_KEEPALIVE_TIME_MS", "900");
  const auto env = parse({});
  ASSERT_TRUE(env.result.cfg) << env.err;
  EXPECT_EQ(env.result.cfg->shutdown_drain_ms, 1500u);
  EXPECT_EQ(env.result.cfg->keepalive_requests, 7u);
  EXPECT_EQ(env.result.cfg->keepalive_time_ms, 900u);
  for (const auto& args : std::vector<std::vector<const char*>>{
           {"--shutdown-drain-ms", "-1"}, {"--keepalive-requests", "x"}, {"--keepalive-time-ms", "99999999999"}}) {
    EXPECT_FALSE(parse(args).result.cfg.has_value()) << args[0];
  }
  const auto help = parse({"--help"});
  for (const char* flag : {"--shutdown-drain-ms", "--keepalive-requests", "--keepalive-time-ms"}) {
    EXPECT_NE(help.out.find(flag), std::string::npos) << flag;
  }
}

TEST(config, cgroup_cpu_quota) {
  EXPECT_EQ(cpus_from_cgroup_v2("max 100000\n"), std::nullopt);
  EXPECT_EQ(cpus_from_cgroup_v2("50000 100000\n"), 1u);
  EXPECT_EQ(cpus_from_cgroup_v2("100000 100000"), 1u);
  EXPECT_EQ(cpus_from_cgroup_v2("150000 100000"), 2u);
  EXPECT_EQ(cpus_from_cgroup_v2("400000 100000"), 4u);
  EXPECT_EQ(cpus_from_cgroup_v2("garbage"), std::nullopt);
  EXPECT_EQ(cpus_from_cgroup_v2("0 100000"), std::nullopt);
}

TEST(config, cgroup_v1_cpu_quota) {
  EXPECT_EQ(cpus_from_cgroup_v1("-1\n", "100000\n"), std::nullopt);
  EXPECT_EQ(cpus_from_cgroup_v1("50000\n", "100000\n"), 1u);
  EXPECT_EQ(cpus_from_cgroup_v1("150000", "100000"), 2u);
  EXPECT_EQ(cpus_from_cgroup_v1("200000\n", "100000\n"), 2u);
  EXPECT_EQ(cpus_from_cgroup_v1("0", "100000"), std::nullopt);
  EXPECT_EQ(cpus_from_cgroup_v1("50000", "0"), std::nullopt);
  EXPECT_EQ(cpus_from_cgroup_v1("garbage", "100000"), std::nullopt);
  EXPECT_EQ(cpus_from_cgroup_v1("", ""), std::nullopt);
}

// A fake filesystem root: proc/self/{cgroup,mountinfo} and cgroup files, as Linux shows them.
class fake_root {
 public:
  fake_root() {
    char pattern[] = "/tmp/celsius-cgroup-XXXXXX";
    root_ = mkdtemp(pattern);
    write("proc/self/cgroup", "");
    write("proc/self/mountinfo", "");
  }
  ~fake_root() { std::filesystem::remove_all(root_); }
  fake_root(const fake_root&) = delete;
  fake_root& operator=(const fake_root&) = delete;
  void write(const std::string& path, const std::string& text) const {
    const auto file = root_ / path;
    std::filesystem::create_directories(file.parent_path());
    std::ofstream(file) << text;
  }
  const std::filesystem::path& path() const { return root_; }

 private:
  std::filesystem::path root_;
};

// Issue 11, defect 9: on a cgroup v1 node (a Kubernetes container without a cgroup
// namespace; the limit is 500m) the service started 2 threads.
TEST(config, cgroup_v1_kubernetes_container) {
  fake_root fs;
  const std::string pod = "/kubepods/burstable/pod1f2e/0123abcd";
  fs.write("proc/self/cgroup", "12:pids:" + pod + "\n4:cpu,cpuacct:" + pod + "\n1:name=systemd:" + pod + "\n");
  fs.write("proc/self/mountinfo",
           "1200 1100 0:50 / / rw,relatime - overlay overlay rw\n"
           "1210 1200 0:52 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755\n"
           "1213 1210 0:27 " +
               pod +
               " /sys/fs/cgroup/cpu,cpuacct ro,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
               "1214 1210 0:28 " +
               pod + " /sys/fs/cgroup/pids ro,nosuid - cgroup cgroup rw,pids\n");
  fs.write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "50000\n");
  fs.write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
  EXPECT_EQ(cgroup_cpu_limit(fs.path()), 1u);
  fs.write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
  EXPECT_EQ(cgroup_cpu_limit(fs.path()), std::nullopt);
  fs.write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "250000\n");
  EXPECT_EQ(cgroup_cpu_limit(fs.path()), 3u);
}

// A v1 host (like this project's CI machines): the process's cgroup is a directory below
// the mount; a limit on a parent applies too, and the smallest wins.
TEST(config, cgroup_v1_host_walks_up_to_the_mount) {
  fake_root fs;
  fs.write("proc/self/cgroup", "4:memory:/svc\n2:cpuacct:/\n1:cpu:/services/celsius\n0::/\n");
  fs.write("proc/self/mountinfo",
           "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
           "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
           "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
           "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n");
  const std::string cpu = "sys/fs/cgroup/cpu/";
  for (const std::string dir : {"", "services/", "services/celsius/"}) {
    fs.write(cpu + dir + "cpu.cfs_quota_us", "-1\n");
    fs.write(cpu + dir + "cpu.cfs_period_us", "100000\n");
  }
  EXPECT_EQ(cgroup_cpu_limit(fs.path()), std::nullopt);
  fs.write(cpu + "services/cpu.cfs_quota_us", "150000\n");
  EXPECT_EQ(cgroup_cpu_limit(fs.path()), 2u);
  fs.write(cpu + "services/celsius/cpu.cfs_quota_us", "300000\n");
  EXPECT_EQ(cgroup_cpu_limit(fs.path()), 2u);  // the parent's is smaller
  fs.write(cpu + "services/celsius/cpu.cfs_quota_us", "20000\n");
  EXPECT_EQ(cgroup_cpu_limit(fs.path()), 1u);
  // The v2 hierarchy of a hybrid host has no cpu controller: nothing to read there.
  fs.write("sys/fs/cgroup/unified/cpu.max", "garbage");
  EXPECT_EQ(cgroup_cpu_limit(fs.path()), 1u);
}

TEST(config, cgroup_v2_container_and_host) {
  fake_root fs;
  fs.write("proc/self/cgroup", "0::/\n");
  fs.write("proc/self/mountinfo", "30 25 0:26 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
  fs.write("sys/fs/cgroup/cpu.max", "50000 100000\n");
  EXPECT_EQ(cgroup_cpu_limit(fs.path()), 1u);
  fs.write("sys/fs/cgroup/cpu.max", "max 100000\n");
  EXPECT_EQ(cgroup_cpu_limit(fs.path()), std::nullopt);

  // A host: the process's cgroup is nested; its parent holds the limit.
  fs.write("proc/self/cgroup", "0::/kubepods.slice/pod.slice/cri-1.scope\n");
  fs.write("sys/fs/cgroup/kubepods.slice/pod.slice/cri-1.scope/cpu.max", "max 100000\n");
  fs.write("sys/fs/cgroup/kubepods.slice/pod.slice/cpu.max", "200000 100000\n");
  EXPECT_EQ(cgroup_cpu_limit(fs.path()), 2u);
}

TEST(config, cgroup_without_information_gives_no_limit) {
  fake_root fs;
  EXPECT_EQ(cgroup_cpu_limit(fs.path()), std::nullopt);
  EXPECT_EQ(cgroup_cpu_limit("/nonexistent-celsius-root"), std::nullopt);
  // A cgroup path that would leave the mount is not followed.
  fs.write("proc/self/cgroup", "1:cpu:/../../etc\n");
  fs.write("proc/self/mountinfo", "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n");
  EXPECT_EQ(cgroup_cpu_limit(fs.path()), std::nullopt);
  // A mount point with an escaped space (\040 in mountinfo).
  fs.write("proc/self/cgroup", "1:cpu:/\n");
  fs.write("proc/self/mountinfo", "32 31 0:29 / /sys/fs/cgroup/my\\040cpu rw - cgroup cgroup rw,cpu\n");
  fs.write("sys/fs/cgroup/my cpu/cpu.cfs_quota_us", "100000\n");
  fs.write("sys/fs/cgroup/my cpu/cpu.cfs_period_us", "100000\n");
  EXPECT_EQ(cgroup_cpu_limit(fs.path()), 1u);
}

}  // namespace
}  // namespace celsius
