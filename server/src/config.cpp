#include "config.hpp"

#include <sched.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <fstream>
#include <limits>
#include <sstream>
#include <thread>

#include "version.hpp"

namespace celsius {

std::optional<unsigned> cpus_from_cgroup_v2(std::string_view cpu_max) {
  const auto space = cpu_max.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const std::string_view quota_text = cpu_max.substr(0, space);
  std::string_view period_text = cpu_max.substr(space + 1);
  while (!period_text.empty() && (period_text.back() == '\n' || period_text.back() == ' ')) {
    period_text.remove_suffix(1);
  }
  if (quota_text == "max") return std::nullopt;
  std::uint64_t quota = 0;
  std::uint64_t period = 0;
  auto parse = [](std::string_view text, std::uint64_t& value) {
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    return ec == std::errc() && ptr == text.data() + text.size();
  };
  if (!parse(quota_text, quota) || !parse(period_text, period) || quota == 0 || period == 0) {
    return std::nullopt;
  }
  return static_cast<unsigned>((quota + period - 1) / period);
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
  std::ifstream file("/sys/fs/cgroup/cpu.max");
  std::string line;
  if (file && std::getline(file, line)) {
    if (const auto limit = cpus_from_cgroup_v2(line); limit && *limit < cpus) cpus = *limit;
  }
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
      "Close a client that takes longer to send a request or read a response")
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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return {std::nullopt, app.exit(e, out, err)};
  }
  cfg.threads = threads ? *threads : default_threads();
  return {cfg, 0};
}

}  // namespace celsius
