#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace celsius::serving {

// The metrics TF Serving exports for Prometheus (util/prometheus_exporter.cc: a TensorFlow
// metric "/a/b/c" is named ":a:b:c"; "# TYPE" lines; histograms as _bucket{le=...}, _sum,
// _count), with TF Serving's names, labels and bucket limits:
//   /tensorflow/serving/request_count{model_name,status}                 counter
//   /tensorflow/serving/request_latency{model_name,API,entrypoint}       histogram, microseconds
//   /tensorflow/serving/runtime_latency{model_name,API,runtime}          histogram, microseconds
//   /tensorflow/serving/batching_session/input_batch_size                histogram, rows per request
//   /tensorflow/serving/batching_session/processed_batch_size            histogram, rows per session run
//   /tensorflow/serving/batching_session/padding_size{execution_batch_size}  histogram, padding rows
// (servables/tensorflow/util.cc, batching/batching_session.cc). TF Serving records the three
// batching ones as percentile samplers; here they are histograms with power-of-two buckets,
// so the batch sizes formed can be read from the _bucket, _sum and _count lines.

class histogram {
 public:
  explicit histogram(std::vector<double> limits);  // increasing; an overflow bucket is added
  void observe(double value);
  struct snapshot {
    std::vector<std::uint64_t> counts;  // per bucket (not cumulative), last = overflow
    double sum = 0;
  };
  snapshot read() const;
  const std::vector<double>& limits() const { return limits_; }

 private:
  std::vector<double> limits_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

// Label values -> cell, for one metric. Cells live as long as the family.
template <typename Cell>
class family {
 public:
  template <typename... Args>
  explicit family(std::vector<std::string> label_names, Args... cell_args)
      : labels_(std::move(label_names)), make_([cell_args...] { return std::make_unique<Cell>(cell_args...); }) {}

  Cell& at(const std::vector<std::string>& values) {
    std::lock_guard lock(mutex_);
    auto& cell = cells_[values];
    if (!cell) cell = make_();
    return *cell;
  }
  template <typename F>
  void each(F f) const {
    std::lock_guard lock(mutex_);
    for (const auto& [values, cell] : cells_) f(values, *cell);
  }
  const std::vector<std::string>& label_names() const { return labels_; }

 private:
  std::vector<std::string> labels_;
  std::function<std::unique_ptr<Cell>()> make_;
  mutable std::mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<Cell>> cells_;
};

struct counter {
  std::atomic<std::uint64_t> value{0};
  void add(std::uint64_t n = 1) { value.fetch_add(n, std::memory_order_relaxed); }
};

// TensorFlow's Buckets::Exponential(scale, growth, count): scale * growth^i, i < count.
std::vector<double> exponential_buckets(double scale, double growth, int count);

class serving_metrics {
 public:
  serving_metrics();

  void request(const std::string& model, std::string_view status_name, std::string_view entrypoint, double latency_us);
  void runtime(const std::string& model, double latency_us);
  void input_batch(std::int64_t rows);
  void processed_batch(std::int64_t rows, std::int64_t padding);

  // The page TF Serving's PrometheusExporter serves (text format 0.0.4).
  std::string prometheus_text() const;

 private:
  struct request_cells {
    counter* count;
    histogram* latency;
  };
  request_cells cells_for(const std::string& model, std::string_view status_name, std::string_view entrypoint);
  static std::uint64_t next_id();

  const std::uint64_t id_ = next_id();  // per-thread cell caches are keyed by it (never reused)
  family<counter> request_count_;
  family<histogram> request_latency_;
  family<histogram> runtime_latency_;
  family<histogram> input_batch_size_;
  family<histogram> processed_batch_size_;
  family<histogram> padding_size_;
  histogram* input_batch_size_cell_;
  histogram* processed_batch_size_cell_;
};

}  // namespace celsius::serving
