#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>

#include "model_client.hpp"
#include "model_coalescer.hpp"

namespace celsius {

// Fail fast after repeated failures. Closed: every call goes through. After `threshold`
// consecutive failures it opens for `open_for`: calls are rejected without being made.
// Then one probe call goes through (half-open); its success closes the breaker, its
// failure opens it again. Thread-safe; the clock is passed in so tests control time.
class circuit_breaker {
 public:
  using clock = std::chrono::steady_clock;
  circuit_breaker(unsigned threshold, std::chrono::milliseconds open_for)
      : threshold_(threshold), open_for_(open_for) {}

  // True: make the call and report its outcome with record(). False: fail fast.
  bool allow(clock::time_point now);
  void record(bool success, clock::time_point now);
  bool open(clock::time_point now) const;

 private:
  mutable std::mutex mutex_;
  unsigned threshold_;
  std::chrono::milliseconds open_for_;
  unsigned failures_ = 0;
  clock::time_point open_until_{};
  bool probing_ = false;
};

// Which outcomes count against the breaker: the model server could not be reached or did
// not answer in time. An error answer (e.g. 400) shows a live server and does not count.
bool is_outage(model_failure kind) noexcept;

struct model_gateway_options {
  std::string name = "f2c";
  std::optional<std::int64_t> version;  // the configured version, if any
  std::chrono::milliseconds timeout{1000};
  unsigned breaker_threshold = 5;
  std::chrono::milliseconds breaker_open_for{1000};
  std::chrono::milliseconds poll_ready{1000};     // status poll period while AVAILABLE
  std::chrono::milliseconds poll_not_ready{250};  // ... and while not
  coalescing_options coalescing;                  // max_values 0: every request is its own call
};

// The model's state as /readyz and /metrics report it (the service's own readiness does
// not depend on it: see server/README.md, "Readiness").
struct model_state {
  bool available = false;     // the last status poll found a version AVAILABLE
  std::int64_t version = 0;   // that version (0: unknown)
  std::string reason;         // why it is not available
  bool failing_fast = false;  // the circuit breaker is open: calls are rejected with 503
};

// The service's side of the model server: the client behind a circuit breaker, request
// coalescing (when on), a thread that polls the model's status (reported by /readyz and
// /metrics), and a count of calls in flight so shutdown can wait for every callback before
// the event loops go away.
class model_gateway {
 public:
  model_gateway(std::unique_ptr<model_client> client, model_gateway_options options);
  ~model_gateway();  // stops polling, then waits for calls in flight
  model_gateway(const model_gateway&) = delete;
  model_gateway& operator=(const model_gateway&) = delete;

  // Starts the status polling thread.
  void start();

  // Calls the model (`fahrenheit` must stay valid until `done` runs), or fails fast with
  // model_failure::rejected while the breaker is open. With coalescing on, a request of at
  // most max_values values joins a merged call; a larger one goes alone. The deadline is
  // `timeout` from now either way. `done` runs exactly once, on a client or gateway thread
  // (inline when rejected).
  void predict(std::span<const double> fahrenheit, std::function<void(predict_result)> done);

  // Available once a status poll found a version AVAILABLE; not available until the first
  // answer and after a poll that failed or found none.
  model_state state() const;

  // `{"name":..,"available":..,"failing_fast":..}` plus "version" (a string, as in
  // /convert/model answers) when available or "reason" when not: the /readyz member.
  void append_state_json(std::string& out) const;

  // Prometheus text: the gauges celsius_model_available and celsius_model_failing_fast, the
  // histogram celsius_model_predict_values (values per Predict call), and the coalescing
  // metrics when it is on.
  void append_metrics(std::string& out) const;

  // The version to report when an answer does not name one (REST answers do not).
  std::int64_t known_version() const;
  const std::string& name() const noexcept { return options_.name; }

  // Blocks until no call is in flight (every callback has returned).
  void wait_idle();

 private:
  void poll_loop();
  // One Predict call behind the breaker, counted in flight.
  void send(std::span<const double> fahrenheit, model_client::clock::time_point deadline,
            std::function<void(predict_result)> done);

  std::unique_ptr<model_client> client_;
  model_gateway_options options_;
  circuit_breaker breaker_;
  shared_histogram<values_per_call_buckets.size()> values_per_call_{values_per_call_buckets};
  std::unique_ptr<request_coalescer> coalescer_;  // null when coalescing is off

  mutable std::mutex mutex_;  // guards the fields below
  // Two conditions, so that a Predict call's completion wakes nobody but a waiter for
  // idleness: with one, every completion woke the status poller, a context switch per
  // call on the service's core (4 % of its CPU with coalescing over gRPC, `perf record`).
  std::condition_variable cv_;       // the poller: its status answer, or stopping_
  std::condition_variable idle_cv_;  // in_flight_ reached 0 (wait_idle)
  bool available_ = false;
  std::string reason_;
  std::int64_t version_ = 0;
  std::size_t in_flight_ = 0;
  bool stopping_ = false;
  std::thread poller_;
};

}  // namespace celsius
