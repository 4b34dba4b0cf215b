#include "config.hpp"

#include <sched.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <fstream>
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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return {std::nullopt, app.exit(e, out, err)};
  }
  cfg.threads = threads ? *threads : default_threads();
  return {cfg, 0};
}

}  // namespace celsius
