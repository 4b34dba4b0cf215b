#include "metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <span>

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
    case route::convert_model:
      return "/convert/model";
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

std::string_view model_outcome_name(model_outcome o) noexcept {
  static constexpr std::array<std::string_view, model_outcome_count> names = {"ok",    "unavailable", "timeout",
                                                                              "error", "malformed",   "rejected"};
  return names[static_cast<std::size_t>(o)];
}

namespace {
std::size_t bucket_of(std::chrono::nanoseconds elapsed) {
  const double seconds = std::chrono::duration<double>(elapsed).count();
  return static_cast<std::size_t>(std::lower_bound(latency_buckets.begin(), latency_buckets.end(), seconds) -
                                  latency_buckets.begin());
}

// Writes the _bucket, _sum and _count lines of one histogram series from per-bucket counts.
void write_histogram(fmt::memory_buffer& out, std::string_view name, std::string_view labels,
                     std::span<const std::uint64_t> counts, std::uint64_t sum_ns) {
  const auto it = std::back_inserter(out);
  const std::string_view sep = labels.empty() ? "" : ",";
  std::uint64_t running = 0;
  for (std::size_t b = 0; b < counts.size(); ++b) {
    running += counts[b];
    if (b < latency_buckets.size()) {
      fmt::format_to(it, "{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, latency_buckets[b], running);
    } else {
      fmt::format_to(it, "{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, running);
    }
  }
  const std::string braces = labels.empty() ? std::string() : fmt::format("{{{}}}", labels);
  fmt::format_to(it, "{}_sum{} {}\n", name, braces, static_cast<double>(sum_ns) / 1e9);
  fmt::format_to(it, "{}_count{} {}\n", name, braces, running);
}

std::string_view method_name(std::size_t m) {
  static constexpr std::array<std::string_view, method_count> names = {"GET", "HEAD", "POST", "other"};
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
  bump(buckets_[ri * (latency_buckets.size() + 1) + bucket_of(elapsed)], std::uint64_t{1});
  bump(duration_ns_[ri], static_cast<std::uint64_t>(elapsed.count()));
  bump(in_flight_, std::int64_t{-1});
}

void metrics_shard::model_call_finished(model_outcome outcome, std::chrono::nanoseconds elapsed) noexcept {
  bump(model_calls_[static_cast<std::size_t>(outcome)], std::uint64_t{1});
  bump(model_in_flight_, std::int64_t{-1});
  if (outcome == model_outcome::rejected) return;  // no call was made: keep it out of the latency
  bump(model_buckets_[bucket_of(elapsed)], std::uint64_t{1});
  bump(model_duration_ns_, static_cast<std::uint64_t>(elapsed.count()));
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
  std::array<std::uint64_t, model_outcome_count> model_calls{};
  std::array<std::uint64_t, nb> model_buckets{};
  std::uint64_t model_duration_ns = 0;
  std::int64_t model_in_flight = 0;
  for (const auto& s : shards_) {
    for (std::size_t i = 0; i < model_calls.size(); ++i) model_calls[i] += s->model_calls_[i].load(relaxed);
    for (std::size_t i = 0; i < nb; ++i) model_buckets[i] += s->model_buckets_[i].load(relaxed);
    model_duration_ns += s->model_duration_ns_.load(relaxed);
    model_in_flight += s->model_in_flight_.load(relaxed);
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
    const std::string labels = fmt::format("route=\"{}\"", route_name(static_cast<route>(r)));
    write_histogram(out, "celsius_http_request_duration_seconds", labels,
                    std::span<const std::uint64_t>(buckets).subspan(r * nb, nb), duration_ns[r]);
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
  fmt::format_to(it,
                 "# HELP celsius_model_requests_total Calls to the model server by outcome (rejected: failed fast "
                 "without calling).\n"
                 "# TYPE celsius_model_requests_total counter\n");
  for (std::size_t o = 0; o < model_outcome_count; ++o) {
    fmt::format_to(it, "celsius_model_requests_total{{outcome=\"{}\"}} {}\n",
                   model_outcome_name(static_cast<model_outcome>(o)), model_calls[o]);
  }
  fmt::format_to(it,
                 "# HELP celsius_model_request_duration_seconds Time from calling the model server to its answer "
                 "or failure.\n"
                 "# TYPE celsius_model_request_duration_seconds histogram\n");
  write_histogram(out, "celsius_model_request_duration_seconds", "", model_buckets, model_duration_ns);
  fmt::format_to(it,
                 "# HELP celsius_model_requests_in_flight Calls to the model server awaiting an answer.\n"
                 "# TYPE celsius_model_requests_in_flight gauge\n"
                 "celsius_model_requests_in_flight {}\n",
                 model_in_flight);
  return fmt::to_string(out);
}

}  // namespace celsius
