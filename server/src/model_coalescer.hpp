#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "model_client.hpp"

namespace celsius {

// A Prometheus histogram that any thread may add to (relaxed atomics; readers see a
// consistent-enough snapshot for monitoring). `bounds` are the buckets' upper bounds.
template <std::size_t N>
class shared_histogram {
 public:
  explicit constexpr shared_histogram(const std::array<double, N>& bounds) : bounds_(bounds) {}
  void add(double value) noexcept;
  // Appends `# HELP`, `# TYPE` and the series of `name`.
  void render(std::string& out, std::string_view name, std::string_view help) const;

 private:
  const std::array<double, N>& bounds_;
  std::array<std::atomic<std::uint64_t>, N + 1> counts_{};
  std::atomic<double> sum_{0};
};

// Values per Predict call (1 .. 10,000 and above).
inline constexpr std::array<double, 14> values_per_call_buckets = {1,   2,   4,   8,    16,   32,   64,
                                                                   128, 256, 512, 1024, 2048, 4096, 10000};
// Seconds a request spent queued for a batch (10 us .. 1 s).
inline constexpr std::array<double, 15> queue_time_buckets = {
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};

struct coalescing_options {
  std::size_t max_values = 0;            // values per merged Predict call; 0: no coalescing
  std::chrono::microseconds timeout{0};  // longest a request waits for companions; 0: none
  std::size_t max_inflight = 1;          // merged calls awaiting their answer at once
};

// Request coalescing: concurrent predictions (from any thread) are merged into one Predict
// call with their values concatenated, and each caller gets exactly its own slice of the
// answer. A batch is sent when a slot is free (fewer than max_inflight batches out) and
// either it holds max_values values, or its oldest request has waited `timeout` (at once
// when `timeout` is 0: natural batching, requests gather only while every slot is busy).
// Requests stay in arrival order; one that does not fit the batch being formed opens the
// next. Every request keeps its own deadline: one still queued, or in a batch still out,
// when its deadline passes is answered model_failure::timeout then (by this class's timer
// thread, within a few milliseconds). A failed batch answers every member with the same
// failure. A request larger than max_values is not for this class (the caller sends it
// alone).
class request_coalescer {
 public:
  using clock = std::chrono::steady_clock;
  using callback = std::function<void(predict_result)>;
  // One Predict call; calls `done` exactly once, on any thread, possibly inline.
  using sender = std::function<void(std::span<const double> values, clock::time_point deadline, callback done)>;

  request_coalescer(coalescing_options options, sender send, shared_histogram<values_per_call_buckets.size()>& values);
  ~request_coalescer();  // sends everything queued at once, waits for every answer
  request_coalescer(const request_coalescer&) = delete;
  request_coalescer& operator=(const request_coalescer&) = delete;

  // `fahrenheit` (1 .. max_values values, valid until `done` runs) joins the next batch;
  // `done` runs exactly once, on the thread that completes it (inline when the sender
  // answers inline).
  void submit(std::span<const double> fahrenheit, clock::time_point deadline, callback done);

  // Prometheus text: celsius_model_queue_seconds, celsius_model_batches_in_flight,
  // celsius_model_queued_requests, celsius_model_queue_timeouts_total.
  void append_metrics(std::string& out) const;

 private:
  struct member;
  struct batch;

  // Sends batches while the rules allow; one thread at a time (others leave work to it).
  void pump(std::unique_lock<std::mutex>& lock);
  void complete(const std::shared_ptr<batch>& b, predict_result result);
  void timer_loop();
  // Marks `m` answered (false if it already was); the caller then runs its callback.
  bool claim(member& m);
  // Drops answered members from the front of queue_; the next time the timer thread must
  // act (a deadline, or a batch timeout), or max.
  clock::time_point tidy_and_next_wake();
  void finished(std::size_t count);  // outstanding_ -= count; wakes waiters at zero

  const coalescing_options options_;
  const sender send_;
  shared_histogram<values_per_call_buckets.size()>& values_per_call_;
  shared_histogram<queue_time_buckets.size()> queue_time_{queue_time_buckets};
  std::atomic<std::uint64_t> queue_timeouts_{0};

  mutable std::mutex mutex_;                                               // guards everything below
  std::condition_variable timer_cv_;                                       // wakes the timer thread
  std::condition_variable idle_cv_;                                        // outstanding_ reached 0
  std::deque<std::shared_ptr<member>> queue_;                              // not yet sent, arrival order
  std::multimap<clock::time_point, std::shared_ptr<member>> by_deadline_;  // not yet answered
  std::size_t queued_values_ = 0;
  std::size_t batches_in_flight_ = 0;
  std::size_t outstanding_ = 0;  // members not answered + batches not completed
  bool pumping_ = false;
  bool repump_ = false;
  bool stopping_ = false;
  clock::time_point timer_wakes_ = clock::time_point::max();
  std::thread timer_;
};

}  // namespace celsius
