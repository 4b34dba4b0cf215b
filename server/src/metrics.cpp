#include "metrics.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace celsius {

std::string_view route_name(route r) noexcept {
  switch (r) {
    case route::root:
      return "/";
    case route::healthz:
      return "/healthz";
    case route::readyz:
      return "/readyz";
    case route::convert:
      return "/convert";
    case route::metrics:
      return "/metrics";
    case route::openapi:
      return "/openapi.json";
    case route::docs:
      return "/docs";
    case route::unmatched:
      return "unmatched";
  }
  return "unmatched";
}

namespace {
std::string_view method_name(std::size_t m) {
  static constexpr std::array<std::string_view, method_count> names = {"GET", "POST", "other"};
  return names[m];
}
}  // namespace

std::size_t status_slot(unsigned status) noexcept {
  for (std::size_t i = 0; i + 1 < tracked_statuses.size(); ++i) {
    if (tracked_statuses[i] == status) return i;
  }
  return tracked_statuses.size() - 1;
}

void metrics_shard::request_finished(route r, method_label m, unsigned status,
                                     std::chrono::nanoseconds elapsed) noexcept {
  const auto ri = static_cast<std::size_t>(r);
  const auto mi = static_cast<std::size_t>(m);
  bump(requests_[(ri * method_count + mi) * tracked_statuses.size() + status_slot(status)], std::uint64_t{1});
  const double seconds = std::chrono::duration<double>(elapsed).count();
  const auto bucket = static_cast<std::size_t>(
      std::lower_bound(latency_buckets.begin(), latency_buckets.end(), seconds) - latency_buckets.begin());
  bump(buckets_[ri * (latency_buckets.size() + 1) + bucket], std::uint64_t{1});
  bump(duration_ns_[ri], static_cast<std::uint64_t>(elapsed.count()));
  bump(in_flight_, std::int64_t{-1});
}

metrics_registry::metrics_registry(std::size_t shards) {
  for (std::size_t i = 0; i < shards; ++i) shards_.push_back(std::make_unique<metrics_shard>());
}

std::string metrics_registry::render(std::string_view version, std::string_view app_id,
                                     std::uint64_t log_messages_dropped) const {
  constexpr auto relaxed = std::memory_order_relaxed;
  constexpr std::size_t nb = latency_buckets.size() + 1;
  std::array<std::uint64_t, route_count * method_count * tracked_statuses.size()> requests{};
  std::array<std::uint64_t, route_count * nb> buckets{};
  std::array<std::uint64_t, route_count> duration_ns{};
  std::int64_t in_flight = 0;
  for (const auto& s : shards_) {
    for (std::size_t i = 0; i < requests.size(); ++i) requests[i] += s->requests_[i].load(relaxed);
    for (std::size_t i = 0; i < buckets.size(); ++i) buckets[i] += s->buckets_[i].load(relaxed);
    for (std::size_t i = 0; i < route_count; ++i) duration_ns[i] += s->duration_ns_[i].load(relaxed);
    in_flight += s->in_flight_.load(relaxed);
  }

  fmt::memory_buffer out;
  const auto it = std::back_inserter(out);
  fmt::format_to(it,
                 "# HELP celsius_build_info Version and instance id of this process.\n"
                 "# TYPE celsius_build_info gauge\n"
                 "celsius_build_info{{version=\"{}\",app_id=\"{}\"}} 1\n",
                 version, app_id);
  fmt::format_to(it,
                 "# HELP celsius_http_requests_total HTTP requests answered, by route, method and status.\n"
                 "# TYPE celsius_http_requests_total counter\n");
  for (std::size_t r = 0; r < route_count; ++r) {
    for (std::size_t m = 0; m < method_count; ++m) {
      for (std::size_t st = 0; st < tracked_statuses.size(); ++st) {
        const auto n = requests[(r * method_count + m) * tracked_statuses.size() + st];
        if (n == 0) continue;
        const unsigned code = tracked_statuses[st];
        fmt::format_to(it, "celsius_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{}\"}} {}\n",
                       route_name(static_cast<route>(r)), method_name(m),
                       code == 0 ? std::string("other") : std::to_string(code), n);
      }
    }
  }
  fmt::format_to(
      it,
      "# HELP celsius_http_request_duration_seconds Time from a complete request to its response written, by route.\n"
      "# TYPE celsius_http_request_duration_seconds histogram\n");
  for (std::size_t r = 0; r < route_count; ++r) {
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < nb; ++b) cumulative += buckets[r * nb + b];
    if (cumulative == 0) continue;
    const auto name = route_name(static_cast<route>(r));
    std::uint64_t running = 0;
    for (std::size_t b = 0; b < nb; ++b) {
      running += buckets[r * nb + b];
      if (b + 1 < nb) {
        fmt::format_to(it, "celsius_http_request_duration_seconds_bucket{{route=\"{}\",le=\"{}\"}} {}\n", name,
                       latency_buckets[b], running);
      } else {
        fmt::format_to(it, "celsius_http_request_duration_seconds_bucket{{route=\"{}\",le=\"+Inf\"}} {}\n", name,
                       running);
      }
    }
    fmt::format_to(it, "celsius_http_request_duration_seconds_sum{{route=\"{}\"}} {}\n", name,
                   static_cast<double>(duration_ns[r]) / 1e9);
    fmt::format_to(it, "celsius_http_request_duration_seconds_count{{route=\"{}\"}} {}\n", name, cumulative);
  }
  fmt::format_to(it,
                 "# HELP celsius_http_requests_in_flight Requests received and not yet answered.\n"
                 "# TYPE celsius_http_requests_in_flight gauge\n"
                 "celsius_http_requests_in_flight {}\n",
                 in_flight);
  fmt::format_to(it,
                 "# HELP celsius_log_messages_dropped_total Log lines dropped because the log queue was full.\n"
                 "# TYPE celsius_log_messages_dropped_total counter\n"
                 "celsius_log_messages_dropped_total {}\n",
                 log_messages_dropped);
  return fmt::to_string(out);
}

}  // namespace celsius
