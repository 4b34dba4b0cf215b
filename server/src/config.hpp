#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>

namespace celsius {

struct config {
  std::string host = "0.0.0.0";
  std::uint16_t port = 8000;
  unsigned threads = 1;  // default_threads() when not given
  std::string log_level = "info";
  std::size_t max_body_bytes = 1048576;
  std::size_t max_header_bytes = 8192;
  std::size_t max_batch = 10000;
  std::uint32_t shutdown_grace_ms = 10000;
  std::uint32_t idle_timeout_ms = 60000;     // keep-alive connection with no request
  std::uint32_t request_timeout_ms = 10000;  // receiving one request, or sending its response
  std::string model_server;                  // grpc://host:port or http://host:port; empty: none
  std::string model_name = "f2c";
  std::optional<std::int64_t> model_version;  // the latest AVAILABLE version when empty
  std::uint32_t model_timeout_ms = 1000;      // deadline of one call to the model server

  // Connection lifetime (transport). After SIGTERM, existing connections are served for
  // shutdown_drain_ms (answers carry `Connection: close`) before idle ones are closed.
  // A connection is closed after keepalive_requests answers or, at its next answer, once it
  // is keepalive_time_ms old (nginx's keepalive_requests / keepalive_time); 0 = no limit.
  std::uint32_t shutdown_drain_ms = 5000;
  std::uint32_t keepalive_requests = 1000;
  std::uint32_t keepalive_time_ms = 30000;
  // Request coalescing (model_coalescer.hpp): values per merged Predict call (0: off), the
  // longest a request waits for companions (0: only while every call slot is busy), and
  // merged calls in flight at once. Defaults from bench/model-bench.sh (server/README.md).
  std::size_t model_batch_max_values = 256;
  std::uint32_t model_batch_timeout_us = 0;
  std::uint32_t model_batch_max_inflight = 1;
};

// Where the model server is: `grpc://HOST:PORT` (TF Serving's gRPC API) or
// `http://HOST:PORT` (its REST API). HOST may be a name, an IPv4 or a [bracketed] IPv6.
struct model_server_address {
  enum class protocol { grpc, rest };
  protocol scheme = protocol::grpc;
  std::string host;  // without brackets
  std::uint16_t port = 0;
};

// "host:port", or "[v6]:port" for an IPv6 literal: gRPC targets and HTTP Host headers.
std::string host_port(std::string_view host, std::uint16_t port);

// Parses a --model-server value; on failure returns nullopt and says why in `error`.
std::optional<model_server_address> parse_model_server(std::string_view url, std::string& error);

// Either a config to run with, or an exit code (after --help, --version or an error,
// whose text went to `out`/`err`).
struct config_result {
  std::optional<config> cfg;
  int exit_code = 0;
};

// Parses the command line. Every flag --foo-bar also reads CELSIUS_FOO_BAR from the
// environment; the command line wins.
config_result parse_config(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

// Worker threads to use when --threads is not given: the CPUs this process may run on,
// capped by its cgroup CPU limit (cgroup_cpu_limit; a Kubernetes limit of 500m gives 1),
// at least 1.
unsigned default_threads();

// ceil(quota / period) from the text of cgroup v2 `cpu.max` ("max 100000" or
// "50000 100000"); nullopt when unlimited or unreadable.
std::optional<unsigned> cpus_from_cgroup_v2(std::string_view cpu_max);

// ceil(quota / period) from the texts of cgroup v1 `cpu.cfs_quota_us` ("-1" when unlimited)
// and `cpu.cfs_period_us` (Linux Documentation/scheduler/sched-bwc.rst); nullopt when
// unlimited or unreadable.
std::optional<unsigned> cpus_from_cgroup_v1(std::string_view quota_us, std::string_view period_us);

// The CPU limit, in whole CPUs rounded up, of this process's cgroup on cgroup v2
// (`cpu.max`) or v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us` of the hierarchy with the cpu
// controller), or both (hybrid hosts). The cgroup comes from `/proc/self/cgroup`, where its
// hierarchy is mounted from `/proc/self/mountinfo` (so a container's own view works, with or
// without a cgroup namespace); the limit is the smallest one from that cgroup up to the
// mount's root. `root` prefixes every path read (tests pass a fake tree). nullopt: no limit
// found.
std::optional<unsigned> cgroup_cpu_limit(const std::filesystem::path& root = "/");

}  // namespace celsius
