#include "model_gateway.hpp"

#include <fmt/format.h>

#include "json_write.hpp"
#include "logging.hpp"

namespace celsius {

bool circuit_breaker::allow(clock::time_point now) {
  std::lock_guard lock(mutex_);
  if (failures_ < threshold_) return true;  // closed
  if (now < open_until_ || probing_) return false;
  probing_ = true;  // half-open: this call is the probe
  return true;
}

void circuit_breaker::record(bool success, clock::time_point now) {
  std::lock_guard lock(mutex_);
  if (success) {
    failures_ = 0;
    probing_ = false;
    return;
  }
  if (failures_ < threshold_) ++failures_;
  if (failures_ >= threshold_) {
    probing_ = false;
    open_until_ = now + open_for_;
  }
}

bool circuit_breaker::open(clock::time_point now) const {
  std::lock_guard lock(mutex_);
  return failures_ >= threshold_ && (now < open_until_ || probing_);
}

bool is_outage(model_failure kind) noexcept {
  return kind == model_failure::unavailable || kind == model_failure::timeout;
}

model_gateway::model_gateway(std::unique_ptr<model_client> client, model_gateway_options options)
    : client_(std::move(client)),
      options_(std::move(options)),
      breaker_(options_.breaker_threshold, options_.breaker_open_for),
      reason_(fmt::format("model '{}': status not known yet", options_.name)),
      version_(options_.version.value_or(0)) {
  if (options_.coalescing.max_values > 0) {
    coalescer_ = std::make_unique<request_coalescer>(
        options_.coalescing,
        [this](std::span<const double> values, model_client::clock::time_point deadline,
               request_coalescer::callback done) { send(values, deadline, std::move(done)); },
        values_per_call_);
  }
}

model_gateway::~model_gateway() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (poller_.joinable()) poller_.join();
  coalescer_.reset();  // sends what is queued and waits for every answer
  wait_idle();
}

void model_gateway::start() {
  poller_ = std::thread([this] { poll_loop(); });
}

void model_gateway::predict(std::span<const double> fahrenheit, std::function<void(predict_result)> done) {
  if (!breaker_.allow(circuit_breaker::clock::now())) {
    done(model_error{model_failure::rejected,
                     fmt::format("failing fast: the model server failed {} times in a row; retrying within {} ms",
                                 options_.breaker_threshold, options_.breaker_open_for.count())});
    return;
  }
  const auto deadline = model_client::clock::now() + options_.timeout;
  if (coalescer_ && fahrenheit.size() <= options_.coalescing.max_values) {
    coalescer_->submit(fahrenheit, deadline, std::move(done));
    return;
  }
  values_per_call_.add(static_cast<double>(fahrenheit.size()));
  send(fahrenheit, deadline, std::move(done));
}

void model_gateway::send(std::span<const double> fahrenheit, model_client::clock::time_point deadline,
                         std::function<void(predict_result)> done) {
  {
    std::lock_guard lock(mutex_);
    ++in_flight_;
  }
  client_->predict(fahrenheit, deadline, [this, done = std::move(done)](predict_result result) {
    const auto* error = std::get_if<model_error>(&result);
    breaker_.record(error == nullptr || !is_outage(error->kind), circuit_breaker::clock::now());
    done(std::move(result));
    std::lock_guard lock(mutex_);
    if (--in_flight_ == 0) idle_cv_.notify_all();
  });
}

model_state model_gateway::state() const {
  model_state out;
  {
    std::lock_guard lock(mutex_);
    out.available = available_;
    out.version = version_;
    if (!available_) out.reason = reason_;
  }
  out.failing_fast = breaker_.open(circuit_breaker::clock::now());
  return out;
}

void model_gateway::append_state_json(std::string& out) const {
  const model_state s = state();
  out += R"({"name":)";
  append_json_string(out, options_.name);
  fmt::format_to(std::back_inserter(out), R"(,"available":{},"failing_fast":{})", s.available, s.failing_fast);
  if (s.available) {
    fmt::format_to(std::back_inserter(out), R"(,"version":"{}")", s.version);
  } else {
    out += R"(,"reason":)";
    append_json_string(out, s.reason);
  }
  out += '}';
}

void model_gateway::append_metrics(std::string& out) const {
  const model_state s = state();
  fmt::format_to(std::back_inserter(out),
                 "# HELP celsius_model_available 1 when the last status poll found the model AVAILABLE on the model "
                 "server, else 0.\n"
                 "# TYPE celsius_model_available gauge\n"
                 "celsius_model_available {}\n"
                 "# HELP celsius_model_failing_fast 1 while the circuit breaker rejects model calls without making "
                 "them (503), else 0.\n"
                 "# TYPE celsius_model_failing_fast gauge\n"
                 "celsius_model_failing_fast {}\n",
                 s.available ? 1 : 0, s.failing_fast ? 1 : 0);
  values_per_call_.render(out, "celsius_model_predict_values",
                          "Values sent to the model server per Predict call (one request's, or several merged).");
  if (coalescer_) coalescer_->append_metrics(out);
}

std::int64_t model_gateway::known_version() const {
  std::lock_guard lock(mutex_);
  return version_;
}

void model_gateway::wait_idle() {
  std::unique_lock lock(mutex_);
  idle_cv_.wait(lock, [this] { return in_flight_ == 0; });
}

void model_gateway::poll_loop() {
  attach_thread_logger("model-status");
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    ++in_flight_;
    std::optional<model_status> answer;
    lock.unlock();
    client_->status([this, &answer](model_status status) {
      std::lock_guard guard(mutex_);
      answer = std::move(status);
      if (--in_flight_ == 0) idle_cv_.notify_all();
      cv_.notify_all();
    });
    lock.lock();
    // The client always calls back (its deadline bounds the wait); wait for it so
    // `answer` never outlives this frame.
    cv_.wait(lock, [&] { return answer.has_value(); });
    const bool was_available = available_;
    available_ = answer->available;
    if (answer->available) {
      reason_.clear();
      if (!options_.version) version_ = answer->version;
    } else {
      reason_ = fmt::format("model '{}' is not AVAILABLE: {}", options_.name, answer->detail);
    }
    if (was_available != available_) {
      std::string fields = R"("model":)";
      append_json_string(fields, options_.name);
      fields += fmt::format(R"(,"available":{},"version":{},"detail":)", available_, answer->version);
      append_json_string(fields, answer->detail);
      lock.unlock();
      log_info("model availability changed", fields);
      flush_thread_logs();
      lock.lock();
    }
    const auto period = available_ ? options_.poll_ready : options_.poll_not_ready;
    cv_.wait_for(lock, period, [this] { return stopping_; });
  }
}

}  // namespace celsius
