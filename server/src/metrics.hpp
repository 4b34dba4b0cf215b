#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace celsius {

// Route labels are a closed set so metric cardinality stays bounded: every unknown
// path is counted as `unmatched`.
enum class route : std::uint8_t { root, healthz, readyz, convert, convert_model, metrics, openapi, docs, unmatched };
inline constexpr std::size_t route_count = 9;
std::string_view route_name(route r) noexcept;

enum class method_label : std::uint8_t { get, head, post, other };
inline constexpr std::size_t method_count = 4;

// Status codes the service emits, each with its own counter slot; anything else is "other".
inline constexpr std::array<unsigned, 15> tracked_statuses = {200, 400, 404, 405, 408, 413, 415, 422,
                                                              431, 500, 501, 502, 503, 504, 0};
std::size_t status_slot(unsigned status) noexcept;

// Latency histogram bucket upper bounds, in seconds (plus +Inf).
inline constexpr std::array<double, 14> latency_buckets = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                           0.01,    0.025,  0.05,    0.1,    0.25,  1,      5};

// How a call to the model server ended; `rejected` means the client failed fast without
// calling (the breaker was open).
enum class model_outcome : std::uint8_t { ok, unavailable, timeout, error, malformed, rejected };
inline constexpr std::size_t model_outcome_count = 6;
std::string_view model_outcome_name(model_outcome o) noexcept;

// One shard per event-loop thread. Only its owner thread writes (plain load + store,
// no locked instructions); the /metrics handler reads every shard with relaxed loads.
class metrics_shard {
 public:
  void request_started() noexcept { bump(in_flight_, std::int64_t{1}); }
  void request_finished(route r, method_label m, unsigned status, std::chrono::nanoseconds elapsed) noexcept;
  void model_call_started() noexcept { bump(model_in_flight_, std::int64_t{1}); }
  void model_call_finished(model_outcome outcome, std::chrono::nanoseconds elapsed) noexcept;

 private:
  friend class metrics_registry;
  template <typename T>
  static void bump(std::atomic<T>& counter, T delta) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
  }

  std::array<std::atomic<std::uint64_t>, route_count * method_count * tracked_statuses.size()> requests_{};
  std::array<std::atomic<std::uint64_t>, route_count*(latency_buckets.size() + 1)> buckets_{};
  std::array<std::atomic<std::uint64_t>, route_count> duration_ns_{};
  std::atomic<std::int64_t> in_flight_{0};
  std::array<std::atomic<std::uint64_t>, model_outcome_count> model_calls_{};
  std::array<std::atomic<std::uint64_t>, latency_buckets.size() + 1> model_buckets_{};
  std::atomic<std::uint64_t> model_duration_ns_{0};
  std::atomic<std::int64_t> model_in_flight_{0};
};

class metrics_registry {
 public:
  explicit metrics_registry(std::size_t shards);
  metrics_shard& shard(std::size_t index) { return *shards_.at(index); }

  // Prometheus text exposition format 0.0.4.
  std::string render(std::string_view version, std::string_view app_id, std::uint64_t log_messages_dropped) const;

 private:
  std::vector<std::unique_ptr<metrics_shard>> shards_;
};

}  // namespace celsius
