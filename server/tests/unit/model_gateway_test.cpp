#include "model_gateway.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <future>
#include <vector>

namespace celsius {
namespace {

using namespace std::chrono_literals;
using time_point = circuit_breaker::clock::time_point;

TEST(circuit_breaker, opens_after_consecutive_failures_then_probes_once) {
  circuit_breaker breaker(3, 1000ms);
  const time_point t0{};
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(breaker.allow(t0));
    breaker.record(false, t0);
  }
  ASSERT_TRUE(breaker.allow(t0));
  breaker.record(true, t0);  // a success resets the count
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(breaker.allow(t0));
    breaker.record(false, t0);
  }
  EXPECT_TRUE(breaker.open(t0));
  EXPECT_FALSE(breaker.allow(t0 + 999ms));
  // After the open period exactly one probe goes through.
  EXPECT_TRUE(breaker.allow(t0 + 1000ms));
  EXPECT_FALSE(breaker.allow(t0 + 1001ms));
  // The probe fails: open for another period.
  breaker.record(false, t0 + 1100ms);
  EXPECT_FALSE(breaker.allow(t0 + 2000ms));
  EXPECT_TRUE(breaker.allow(t0 + 2100ms));
  // The probe succeeds: closed, everything goes through again.
  breaker.record(true, t0 + 2150ms);
  EXPECT_FALSE(breaker.open(t0 + 2150ms));
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(breaker.allow(t0 + 2200ms));
}

TEST(circuit_breaker, only_outages_count) {
  EXPECT_TRUE(is_outage(model_failure::unavailable));
  EXPECT_TRUE(is_outage(model_failure::timeout));
  EXPECT_FALSE(is_outage(model_failure::error));
  EXPECT_FALSE(is_outage(model_failure::malformed));
  EXPECT_FALSE(is_outage(model_failure::rejected));
}

// A model client whose answers the test scripts; it answers on the calling thread.
class scripted_client : public model_client {
 public:
  std::deque<predict_result> predictions;
  std::deque<model_status> statuses;
  int predict_calls = 0;
  std::vector<std::size_t> sizes;  // values per call

  void predict(std::span<const double> fahrenheit, clock::time_point /*deadline*/,
               std::function<void(predict_result)> done) override {
    ++predict_calls;
    sizes.push_back(fahrenheit.size());
    auto next = predictions.front();
    predictions.pop_front();
    done(std::move(next));
  }
  void status(std::function<void(model_status)> done) override {
    std::lock_guard lock(mutex_);
    model_status next = statuses.size() > 1 ? statuses.front() : statuses.back();
    if (statuses.size() > 1) statuses.pop_front();
    done(next);
  }

 private:
  std::mutex mutex_;
};

predict_result call(model_gateway& gateway) {
  std::optional<predict_result> out;
  const double f = 1;
  gateway.predict({&f, 1}, [&out](predict_result r) { out = std::move(r); });
  return *out;
}

TEST(model_gateway, fails_fast_after_repeated_outages_without_calling) {
  auto client = std::make_unique<scripted_client>();
  scripted_client& script = *client;
  for (int i = 0; i < 3; ++i) script.predictions.push_back(model_error{model_failure::unavailable, "down"});
  model_gateway_options options;
  options.breaker_threshold = 3;
  options.breaker_open_for = 60s;
  model_gateway gateway(std::move(client), options);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(std::get<model_error>(call(gateway)).kind, model_failure::unavailable);
  EXPECT_TRUE(gateway.state().failing_fast);
  const auto rejected = call(gateway);
  EXPECT_EQ(std::get<model_error>(rejected).kind, model_failure::rejected);
  EXPECT_NE(std::get<model_error>(rejected).message.find("failing fast"), std::string::npos);
  EXPECT_EQ(script.predict_calls, 3);
}

TEST(model_gateway, model_errors_do_not_trip_the_breaker) {
  auto client = std::make_unique<scripted_client>();
  scripted_client& script = *client;
  for (int i = 0; i < 5; ++i) script.predictions.push_back(model_error{model_failure::error, "bad input"});
  script.predictions.push_back(model_prediction{{1.0}, 2});
  model_gateway_options options;
  options.breaker_threshold = 2;
  model_gateway gateway(std::move(client), options);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(std::get<model_error>(call(gateway)).kind, model_failure::error);
  EXPECT_EQ(std::get<model_prediction>(call(gateway)).version, 2);
}

TEST(model_gateway, with_coalescing_a_request_over_the_limit_goes_alone_and_rejections_stay_immediate) {
  auto client = std::make_unique<scripted_client>();
  scripted_client& script = *client;
  script.predictions = {model_prediction{{0, 100, -40}, 1}, model_prediction{{0}, 1}};
  for (int i = 0; i < 2; ++i) script.predictions.push_back(model_error{model_failure::unavailable, "down"});
  model_gateway_options options;
  options.coalescing = {2, std::chrono::microseconds(0), 1};
  options.breaker_threshold = 2;
  options.breaker_open_for = 60s;
  model_gateway gateway(std::move(client), options);
  const std::vector<double> three = {32, 212, -40};
  std::promise<predict_result> big;
  gateway.predict(three, [&big](predict_result r) { big.set_value(std::move(r)); });
  EXPECT_EQ(std::get<model_prediction>(big.get_future().get()).celsius, (std::vector<double>{0, 100, -40}));
  EXPECT_EQ(script.sizes, std::vector<std::size_t>{3}) << "3 values > max 2: sent alone, not split";
  std::promise<predict_result> small;
  const double f = 32;
  gateway.predict({&f, 1}, [&small](predict_result r) { small.set_value(std::move(r)); });
  EXPECT_EQ(std::get<model_prediction>(small.get_future().get()).celsius, std::vector<double>{0});
  // The breaker counts merged calls like any other and still rejects at once when open.
  for (int i = 0; i < 2; ++i) {
    std::promise<predict_result> p;
    gateway.predict({&f, 1}, [&p](predict_result r) { p.set_value(std::move(r)); });
    EXPECT_EQ(std::get<model_error>(p.get_future().get()).kind, model_failure::unavailable);
  }
  EXPECT_EQ(std::get<model_error>(call(gateway)).kind, model_failure::rejected);
  EXPECT_EQ(script.predict_calls, 4);
  std::string metrics;
  gateway.append_metrics(metrics);
  EXPECT_NE(metrics.find("celsius_model_predict_values_count 4\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("celsius_model_batches_in_flight 0\n"), std::string::npos) << metrics;
}

TEST(model_gateway, model_state_follows_status_polls) {
  auto client = std::make_unique<scripted_client>();
  scripted_client& script = *client;
  script.statuses = {{false, 0, "loading"}};
  for (int i = 0; i < 40; ++i) script.statuses.push_back({true, 7, ""});  // ready for about 200 ms
  script.statuses.push_back({false, 0, "connection refused"});
  model_gateway_options options;
  options.poll_ready = 5ms;
  options.poll_not_ready = 5ms;
  model_gateway gateway(std::move(client), options);
  EXPECT_FALSE(gateway.state().available);  // before the first answer
  gateway.start();
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  bool saw_ready = false;
  while (std::chrono::steady_clock::now() < deadline) {
    const auto state = gateway.state();
    if (state.available) {
      saw_ready = true;
      EXPECT_EQ(gateway.known_version(), 7);
      EXPECT_EQ(state.version, 7);
      EXPECT_TRUE(state.reason.empty());
    } else if (saw_ready) {
      EXPECT_NE(state.reason.find("connection refused"), std::string::npos) << state.reason;
      EXPECT_NE(state.reason.find("f2c"), std::string::npos) << state.reason;
      return;
    }
    std::this_thread::sleep_for(1ms);
  }
  FAIL() << "the model state did not go unavailable -> available -> unavailable";
}

}  // namespace
}  // namespace celsius
