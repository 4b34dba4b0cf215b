#include "metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <functional>

namespace celsius::serving {

namespace {

const std::vector<double> latency_buckets = exponential_buckets(10, 1.8, 33);  // ~20 minutes
const std::vector<double> size_buckets = exponential_buckets(1, 2, 15);        // 1 .. 16384

// absl::StrCat(double): six significant digits.
std::string number(double v) {
  char text[64];
  const auto end = std::to_chars(text, text + sizeof text, v, std::chars_format::general, 6).ptr;
  return {text, end};
}

std::string label_value(const std::string& v) {
  std::string out;
  for (const char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string labels_text(const std::vector<std::string>& names, const std::vector<std::string>& values) {
  std::string text;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i != 0) text += ',';
    text += names[i] + "=\"" + label_value(values[i]) + "\"";
  }
  return text;
}

void counter_lines(std::string& page, const std::string& name, const family<counter>& f) {
  page += "# TYPE " + name + " counter\n";
  f.each([&](const std::vector<std::string>& values, const counter& c) {
    page += name + "{" + labels_text(f.label_names(), values) + "} " +
            std::to_string(c.value.load(std::memory_order_relaxed)) + "\n";
  });
}

void histogram_lines(std::string& page, const std::string& name, const family<histogram>& f) {
  page += "# TYPE " + name + " histogram\n";
  f.each([&](const std::vector<std::string>& values, const histogram& h) {
    const std::string labels = labels_text(f.label_names(), values);
    const std::string prefix = name + "_bucket{" + labels + (labels.empty() ? "" : ",");
    const histogram::snapshot s = h.read();
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < s.counts.size(); ++i) {
      cumulative += s.counts[i];
      const std::string le = i + 1 < s.counts.size() ? number(h.limits()[i]) : "+Inf";
      fmt::format_to(std::back_inserter(page), "{}le=\"{}\"}} {}\n", prefix, le, cumulative);
    }
    page += name + "_sum{" + labels + "} " + number(s.sum) + "\n";
    page += name + "_count{" + labels + "} " + std::to_string(cumulative) + "\n";
  });
}

}  // namespace

std::vector<double> exponential_buckets(double scale, double growth, int count) {
  std::vector<double> limits;
  double bound = scale;
  for (int i = 0; i < count; ++i) {
    limits.push_back(bound);
    bound *= growth;
  }
  return limits;
}

histogram::histogram(std::vector<double> limits)
    : limits_(std::move(limits)), counts_(new std::atomic<std::uint64_t>[limits_.size() + 1]) {
  for (std::size_t i = 0; i <= limits_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void histogram::observe(double value) {
  // Prometheus' rule, le = "less than or equal" (TensorFlow's Histogram puts a value equal to
  // a limit into the next bucket; for whole batch sizes that would read one bucket off).
  const auto index =
      static_cast<std::size_t>(std::lower_bound(limits_.begin(), limits_.end(), value) - limits_.begin());
  counts_[index].fetch_add(1, std::memory_order_relaxed);
  double sum = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(sum, sum + value, std::memory_order_relaxed)) {
  }
}

histogram::snapshot histogram::read() const {
  snapshot s;
  s.counts.resize(limits_.size() + 1);
  for (std::size_t i = 0; i <= limits_.size(); ++i) s.counts[i] = counts_[i].load(std::memory_order_relaxed);
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

serving_metrics::serving_metrics()
    : request_count_({"model_name", "status"}),
      request_latency_({"model_name", "API", "entrypoint"}, latency_buckets),
      runtime_latency_({"model_name", "API", "runtime"}, latency_buckets),
      input_batch_size_({}, size_buckets),
      processed_batch_size_({}, size_buckets),
      padding_size_({"execution_batch_size"}, size_buckets),
      input_batch_size_cell_(&input_batch_size_.at({})),
      processed_batch_size_cell_(&processed_batch_size_.at({})) {}

std::uint64_t serving_metrics::next_id() {
  static std::atomic<std::uint64_t> ids{0};
  return ++ids;
}

serving_metrics::request_cells serving_metrics::cells_for(const std::string& model, std::string_view status_name,
                                                          std::string_view entrypoint) {
  // Every request records these: a per-thread cache of the cells spares the family's lock
  // and the label vectors (cells live as long as this object).
  thread_local std::uint64_t owner = 0;
  thread_local std::unordered_map<std::string, request_cells> cache;
  thread_local std::string key;
  if (owner != id_) {
    cache.clear();
    owner = id_;
  }
  key.assign(model).append(1, '\0').append(status_name).append(1, '\0').append(entrypoint);
  if (const auto it = cache.find(key); it != cache.end()) return it->second;
  const request_cells cells{&request_count_.at({model, std::string(status_name)}),
                            &request_latency_.at({model, "Predict", std::string(entrypoint)})};
  cache.emplace(key, cells);
  return cells;
}

void serving_metrics::request(const std::string& model, std::string_view status_name, std::string_view entrypoint,
                              double latency_us) {
  const request_cells cells = cells_for(model, status_name, entrypoint);
  cells.count->add();
  cells.latency->observe(latency_us);
}

void serving_metrics::runtime(const std::string& model, double latency_us) {
  thread_local std::uint64_t owner = 0;
  thread_local std::unordered_map<std::string, histogram*> cache;
  if (owner != id_) {
    cache.clear();
    owner = id_;
  }
  histogram*& cell = cache[model];
  if (cell == nullptr) cell = &runtime_latency_.at({model, "Predict", "TF1"});
  cell->observe(latency_us);
}

void serving_metrics::input_batch(std::int64_t rows) { input_batch_size_cell_->observe(static_cast<double>(rows)); }

void serving_metrics::processed_batch(std::int64_t rows, std::int64_t padding) {
  processed_batch_size_cell_->observe(static_cast<double>(rows));
  padding_size_.at({std::to_string(rows)}).observe(static_cast<double>(padding));
}

std::string serving_metrics::prometheus_text() const {
  // Sorted by TensorFlow metric name, as the exporter walks its registry.
  std::string page;
  histogram_lines(page, ":tensorflow:serving:batching_session:input_batch_size", input_batch_size_);
  histogram_lines(page, ":tensorflow:serving:batching_session:padding_size", padding_size_);
  histogram_lines(page, ":tensorflow:serving:batching_session:processed_batch_size", processed_batch_size_);
  counter_lines(page, ":tensorflow:serving:request_count", request_count_);
  histogram_lines(page, ":tensorflow:serving:request_latency", request_latency_);
  histogram_lines(page, ":tensorflow:serving:runtime_latency", runtime_latency_);
  return page;
}

}  // namespace celsius::serving
