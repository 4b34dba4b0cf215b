#include "config.hpp"

#include <sched.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <fstream>
#include <limits>
#include <sstream>
#include <thread>
#include <vector>

#include "version.hpp"

namespace celsius {

namespace {

bool parse_unsigned(std::string_view text, std::uint64_t& value) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return !text.empty() && ec == std::errc() && ptr == text.data() + text.size();
}

std::optional<unsigned> cpus_from_quota(std::uint64_t quota, std::uint64_t period) {
  if (quota == 0 || period == 0) return std::nullopt;
  return static_cast<unsigned>((quota + period - 1) / period);
}

std::optional<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream file(path);
  if (!file) return std::nullopt;
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

// mountinfo escapes spaces, tabs, newlines and backslashes in paths as octal (\040).
std::string unescape_mount_path(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size()) {
      const auto digit = [&](std::size_t k) { return text[i + k] >= '0' && text[i + k] <= '7'; };
      if (digit(1) && digit(2) && digit(3)) {
        out += static_cast<char>((text[i + 1] - '0') * 64 + (text[i + 2] - '0') * 8 + (text[i + 3] - '0'));
        i += 3;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  for (;;) {
    const auto at = text.find(separator);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return parts;
    text.remove_prefix(at + 1);
  }
}

bool has_option(std::string_view options, std::string_view wanted) {
  for (const auto option : split(options, ',')) {
    if (option == wanted) return true;
  }
  return false;
}

// A cgroup hierarchy as this process sees it: where it is mounted, which cgroup directory
// of it that mount shows at its top, and this process's cgroup in it.
struct hierarchy {
  std::string mount_point;
  std::string mount_root;
  std::string cgroup;
};

// The limit of one hierarchy: the smallest from this process's cgroup up to the mount.
template <typename ReadLimit>
std::optional<unsigned> limit_of(const std::filesystem::path& root, const hierarchy& h, ReadLimit read_limit) {
  // The cgroup's directory under the mount: its path relative to the mount's root (a
  // container without a cgroup namespace sees its own cgroup mounted at the top; with one,
  // both paths are "/").
  std::string_view relative;
  if (h.mount_root == "/") {
    relative = h.cgroup;
  } else if (h.cgroup == h.mount_root || h.cgroup.starts_with(h.mount_root + "/")) {
    relative = std::string_view(h.cgroup).substr(h.mount_root.size());
  }
  std::vector<std::filesystem::path> dirs{root / std::filesystem::path(h.mount_point).relative_path()};
  for (const auto part : split(relative, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") return std::nullopt;  // never leave the mount
    dirs.push_back(dirs.back() / part);
  }
  std::optional<unsigned> limit;
  for (const auto& dir : dirs) {
    if (const auto found = read_limit(dir); found && (!limit || *found < *limit)) limit = found;
  }
  return limit;
}

}  // namespace

std::optional<unsigned> cpus_from_cgroup_v2(std::string_view cpu_max) {
  const auto space = cpu_max.find(' ');
  if (space == std::string_view::npos || cpu_max.substr(0, space) == "max") return std::nullopt;
  std::uint64_t quota = 0;
  std::uint64_t period = 0;
  if (!parse_unsigned(cpu_max.substr(0, space), quota) || !parse_unsigned(cpu_max.substr(space + 1), period)) {
    return std::nullopt;
  }
  return cpus_from_quota(quota, period);
}

std::optional<unsigned> cpus_from_cgroup_v1(std::string_view quota_us, std::string_view period_us) {
  while (!quota_us.empty() && (quota_us.back() == '\n' || quota_us.back() == ' ')) quota_us.remove_suffix(1);
  if (quota_us.starts_with('-')) return std::nullopt;  // -1: no quota
  std::uint64_t quota = 0;
  std::uint64_t period = 0;
  if (!parse_unsigned(quota_us, quota) || !parse_unsigned(period_us, period)) return std::nullopt;
  return cpus_from_quota(quota, period);
}

std::optional<unsigned> cgroup_cpu_limit(const std::filesystem::path& root) {
  const auto mountinfo = read_file(root / "proc/self/mountinfo");
  const auto cgroups = read_file(root / "proc/self/cgroup");
  if (!mountinfo || !cgroups) return std::nullopt;

  // /proc/self/cgroup: "hierarchy-id:controllers:path"; v2 is "0::path" (cgroups(7)).
  std::optional<std::string> v1_cgroup;
  std::optional<std::string> v2_cgroup;
  for (const auto line : split(*cgroups, '\n')) {
    const auto parts = split(line, ':');
    if (parts.size() < 3) continue;
    const std::string path(line.substr(parts[0].size() + parts[1].size() + 2));
    if (parts[0] == "0" && parts[1].empty()) {
      v2_cgroup = path;
    } else if (has_option(parts[1], "cpu")) {
      v1_cgroup = path;
    }
  }

  // /proc/self/mountinfo: "id parent major:minor root mount-point options [optional...] - type source super-options"
  // (proc(5)).
  std::optional<unsigned> limit;
  const auto take = [&limit](std::optional<unsigned> found) {
    if (found && (!limit || *found < *limit)) limit = found;
  };
  for (const auto line : split(*mountinfo, '\n')) {
    const auto dash = line.find(" - ");
    if (dash == std::string_view::npos) continue;
    const auto fields = split(line.substr(0, dash), ' ');
    const auto tail = split(line.substr(dash + 3), ' ');
    if (fields.size() < 5 || tail.size() < 3) continue;
    hierarchy h{unescape_mount_path(fields[4]), unescape_mount_path(fields[3]), {}};
    if (tail[0] == "cgroup2" && v2_cgroup) {
      h.cgroup = *v2_cgroup;
      take(limit_of(root, h, [](const std::filesystem::path& dir) -> std::optional<unsigned> {
        const auto text = read_file(dir / "cpu.max");
        return text ? cpus_from_cgroup_v2(*text) : std::nullopt;
      }));
    } else if (tail[0] == "cgroup" && v1_cgroup && has_option(tail[2], "cpu")) {
      h.cgroup = *v1_cgroup;
      take(limit_of(root, h, [](const std::filesystem::path& dir) -> std::optional<unsigned> {
        const auto quota = read_file(dir / "cpu.cfs_quota_us");
        const auto period = read_file(dir / "cpu.cfs_period_us");
        return quota && period ? cpus_from_cgroup_v1(*quota, *period) : std::nullopt;
      }));
    }
  }
  return limit;
}

std::string host_port(std::string_view host, std::uint16_t port) {
  const bool v6 = host.find(':') != std::string_view::npos;
  return (v6 ? "[" + std::string(host) + "]" : std::string(host)) + ":" + std::to_string(port);
}

std::optional<model_server_address> parse_model_server(std::string_view url, std::string& error) {
  model_server_address out;
  std::string_view rest;
  if (url.starts_with("grpc://")) {
    out.scheme = model_server_address::protocol::grpc;
    rest = url.substr(7);
  } else if (url.starts_with("http://")) {
    out.scheme = model_server_address::protocol::rest;
    rest = url.substr(7);
  } else {
    error = "must start with grpc:// or http://";
    return std::nullopt;
  }
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  std::string_view port_text;
  if (rest.starts_with('[')) {
    const auto close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      error = "an IPv6 address must look like [::1]:8500";
      return std::nullopt;
    }
    out.host = std::string(rest.substr(1, close - 1));
    port_text = rest.substr(close + 2);
  } else {
    const auto colon = rest.rfind(':');
    if (colon == std::string_view::npos) {
      error = "needs a port, e.g. grpc://localhost:8500";
      return std::nullopt;
    }
    out.host = std::string(rest.substr(0, colon));
    port_text = rest.substr(colon + 1);
  }
  const char* forbidden = rest.starts_with('[') ? "/?#@ []" : "/?#@ :[]";
  if (out.host.empty() || out.host.find_first_of(forbidden) != std::string::npos) {
    error = "has no valid host";
    return std::nullopt;
  }
  unsigned port = 0;
  const auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || ptr != port_text.data() + port_text.size() || port == 0 || port > 65535) {
    error = "has no valid port (1-65535)";
    return std::nullopt;
  }
  out.port = static_cast<std::uint16_t>(port);
  return out;
}

unsigned default_threads() {
  unsigned cpus = std::thread::hardware_concurrency();
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = static_cast<unsigned>(CPU_COUNT(&set));
  if (const auto limit = cgroup_cpu_limit(); limit && *limit < cpus) cpus = *limit;
  return cpus == 0 ? 1 : cpus;
}

config_result parse_config(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  config cfg;
  std::optional<unsigned> threads;
  CLI::App app{"celsius-server: converts Fahrenheit to Celsius over HTTP/JSON", "celsius-server"};
  app.set_version_flag("--version", std::string(version));
  app.get_formatter()->column_width(36);

  auto env_name = [](const std::string& flag) {
    std::string name = "CELSIUS_";
    for (char c : flag) name += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return name;
  };
  auto add = [&](const std::string& flag, auto& value, const std::string& help) {
    return app.add_option("--" + flag, value, help)->envname(env_name(flag))->capture_default_str();
  };

  add("host", cfg.host, "IP address to listen on (IPv4 or IPv6 literal)");
  add("port", cfg.port, "TCP port; 0 picks a free port (the startup log line names it)");
  app.add_option("--threads", threads, "Worker threads, one event loop each (default: usable CPUs, cgroup quota aware)")
      ->envname("CELSIUS_THREADS")
      ->check(CLI::Range(1u, 256u));
  add("log-level", cfg.log_level, "trace, debug, info (one JSON line per request), warn, error, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  add("max-body-bytes", cfg.max_body_bytes, "Largest request body; larger ones get 413 payload_too_large")
      ->check(CLI::Range(std::size_t{64}, std::size_t{1} << 30));
  add("max-header-bytes", cfg.max_header_bytes, "Largest request head (request line + headers); larger ones get 431")
      ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 20));
  add("max-batch", cfg.max_batch, "Most values in one batch request; more get 413 batch_too_large")
      ->check(CLI::Range(std::size_t{1}, std::size_t{10000000}));
  add("shutdown-grace-ms", cfg.shutdown_grace_ms, "On SIGTERM/SIGINT, how long in-flight requests may take to finish")
      ->check(CLI::Range(0u, 3600000u));
  add("idle-timeout-ms", cfg.idle_timeout_ms, "Close a keep-alive connection idle for this long")
      ->check(CLI::Range(1u, 3600000u));
  add("request-timeout-ms", cfg.request_timeout_ms,
      "A request must arrive whole within this time of its first byte (else 408, close); also bounds "
      "writing an answer")
      ->check(CLI::Range(1u, 3600000u));

  add("model-server", cfg.model_server,
      "Model server for /convert/model: grpc://HOST:8500 (TF Serving gRPC) or http://HOST:8501 (REST)")
      ->check([](const std::string& value) {
        std::string error;
        if (value.empty() || parse_model_server(value, error)) return std::string();
        return "--model-server " + error;
      });
  add("model-name", cfg.model_name, "Name of the model on the model server")->check([](const std::string& value) {
    return value.empty() || value.find_first_of("/?#: ") != std::string::npos
               ? std::string("--model-name must be non-empty without / ? # : or spaces")
               : std::string();
  });
  app.add_option("--model-version", cfg.model_version, "Model version to call (default: the latest AVAILABLE)")
      ->envname("CELSIUS_MODEL_VERSION")
      ->check(CLI::Range(std::int64_t{1}, std::numeric_limits<std::int64_t>::max()));
  add("model-timeout-ms", cfg.model_timeout_ms, "Deadline of one call to the model server (504 model_timeout after)")
      ->check(CLI::Range(1u, 600000u));
  add("model-batch-max-values", cfg.model_batch_max_values,
      "Merge concurrent /convert/model requests into Predict calls of at most this many values (0: off)")
      ->check(CLI::Range(std::size_t{0}, std::size_t{10000000}));
  add("model-batch-timeout-us", cfg.model_batch_timeout_us,
      "Longest a request waits for others to merge with (0: only while every merged call slot is busy)")
      ->check(CLI::Range(0u, 1000000u));
  add("model-batch-max-inflight", cfg.model_batch_max_inflight, "Merged Predict calls in flight at once")
      ->check(CLI::Range(1u, 1024u));

  // Connection lifetime: the drain after SIGTERM and the keep-alive limits (transport).
  add("shutdown-drain-ms", cfg.shutdown_drain_ms,
      "After SIGTERM/SIGINT, keep serving requests on open connections this long (answered with "
      "Connection: close), then close idle ones; within --shutdown-grace-ms")
      ->check(CLI::Range(0u, 3600000u));
  add("keepalive-requests", cfg.keepalive_requests,
      "Close a connection after this many answers (the last says Connection: close); 0: no limit")
      ->check(CLI::Range(0u, 100000000u));
  add("keepalive-time-ms", cfg.keepalive_time_ms,
      "Close a connection at its first answer once it is this old (Connection: close); 0: no limit")
      ->check(CLI::Range(0u, 86400000u));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return {std::nullopt, app.exit(e, out, err)};
  }
  cfg.threads = threads ? *threads : default_threads();
  return {cfg, 0};
}

}  // namespace celsius
