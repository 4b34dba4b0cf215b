#include "metrics.hpp"

#include <gtest/gtest.h>

namespace celsius {
namespace {

using std::chrono::microseconds;

bool has(const std::string& text, const std::string& line) { return text.find(line + "\n") != std::string::npos; }

TEST(metrics, model_calls_by_outcome_latency_and_in_flight) {
  using std::chrono::microseconds;
  metrics_registry registry(2);
  for (int i = 0; i < 3; ++i) registry.shard(i % 2).model_call_started();
  registry.shard(0).model_call_finished(model_outcome::ok, microseconds(400));
  registry.shard(1).model_call_finished(model_outcome::timeout, microseconds(1'000'000));
  registry.shard(0).model_call_started();
  registry.shard(0).model_call_finished(model_outcome::rejected, microseconds(1));
  const std::string text = registry.render("1", "id", 0);
  auto has = [&](const std::string& line) { return text.find(line + "\n") != std::string::npos; };
  EXPECT_TRUE(has(R"(celsius_model_requests_total{outcome="ok"} 1)")) << text;
  EXPECT_TRUE(has(R"(celsius_model_requests_total{outcome="timeout"} 1)"));
  EXPECT_TRUE(has(R"(celsius_model_requests_total{outcome="rejected"} 1)"));
  EXPECT_TRUE(has(R"(celsius_model_requests_total{outcome="unavailable"} 0)"));
  // Rejected calls made no call: not in the latency histogram.
  EXPECT_TRUE(has(R"(celsius_model_request_duration_seconds_bucket{le="0.0005"} 1)"));
  EXPECT_TRUE(has(R"(celsius_model_request_duration_seconds_bucket{le="1"} 2)"));
  EXPECT_TRUE(has("celsius_model_request_duration_seconds_count 2"));
  EXPECT_TRUE(has("celsius_model_request_duration_seconds_sum 1.0004"));
  EXPECT_TRUE(has("celsius_model_requests_in_flight 1"));
}

TEST(metrics, counts_across_shards) {
  metrics_registry registry(2);
  for (int i = 0; i < 3; ++i) {
    registry.shard(0).request_started();
    registry.shard(0).request_finished(route::convert, method_label::post, 200, microseconds(30));
  }
  registry.shard(1).request_started();
  registry.shard(1).request_finished(route::convert, method_label::post, 200, microseconds(2000));
  registry.shard(1).request_started();
  registry.shard(1).request_finished(route::unmatched, method_label::get, 404, microseconds(10));
  registry.shard(1).request_started();  // still in flight

  const std::string text = registry.render("1.2.3", "abc", 5);
  EXPECT_TRUE(has(text, R"(celsius_http_requests_total{route="/convert",method="POST",status="200"} 4)")) << text;
  EXPECT_TRUE(has(text, R"(celsius_http_requests_total{route="unmatched",method="GET",status="404"} 1)"));
  EXPECT_TRUE(has(text, R"(celsius_http_request_duration_seconds_bucket{route="/convert",le="5e-05"} 3)"));
  EXPECT_TRUE(has(text, R"(celsius_http_request_duration_seconds_bucket{route="/convert",le="0.001"} 3)"));
  EXPECT_TRUE(has(text, R"(celsius_http_request_duration_seconds_bucket{route="/convert",le="0.0025"} 4)"));
  EXPECT_TRUE(has(text, R"(celsius_http_request_duration_seconds_bucket{route="/convert",le="+Inf"} 4)"));
  EXPECT_TRUE(has(text, R"(celsius_http_request_duration_seconds_count{route="/convert"} 4)"));
  EXPECT_TRUE(has(text, R"(celsius_http_request_duration_seconds_sum{route="/convert"} 0.00209)"));
  EXPECT_TRUE(has(text, "celsius_http_requests_in_flight 1"));
  // Model metrics are always present, zero until used.
  EXPECT_TRUE(has(text, R"(celsius_model_requests_total{outcome="ok"} 0)")) << text;
  EXPECT_TRUE(has(text, "celsius_model_requests_in_flight 0"));
  EXPECT_TRUE(has(text, R"(celsius_build_info{version="1.2.3",app_id="abc"} 1)"));
  EXPECT_TRUE(has(text, "celsius_log_messages_dropped_total 5"));
  EXPECT_EQ(text.find("route=\"/healthz\""), std::string::npos) << "series with no requests are not emitted";
}

TEST(metrics, every_metric_has_help_and_type) {
  metrics_registry registry(1);
  const std::string text = registry.render("v", "id", 0);
  for (const char* name : {"celsius_build_info", "celsius_http_requests_total", "celsius_http_request_duration_seconds",
                           "celsius_http_requests_in_flight", "celsius_log_messages_dropped_total"}) {
    EXPECT_NE(text.find(std::string("# HELP ") + name + " "), std::string::npos) << name;
    EXPECT_NE(text.find(std::string("# TYPE ") + name + " "), std::string::npos) << name;
  }
}

TEST(metrics, unexpected_statuses_share_one_slot) {
  EXPECT_EQ(status_slot(200), 0u);
  EXPECT_EQ(status_slot(418), tracked_statuses.size() - 1);
  metrics_registry registry(1);
  registry.shard(0).request_started();
  registry.shard(0).request_finished(route::root, method_label::other, 418, microseconds(1));
  EXPECT_TRUE(
      has(registry.render("v", "id", 0), R"(celsius_http_requests_total{route="/",method="other",status="other"} 1)"));
}

TEST(metrics, head_requests_and_501_have_their_own_labels) {
  metrics_registry registry(1);
  registry.shard(0).request_started();
  registry.shard(0).request_finished(route::healthz, method_label::head, 200, microseconds(1));
  registry.shard(0).request_started();
  registry.shard(0).request_finished(route::convert, method_label::post, 501, microseconds(1));
  const std::string text = registry.render("v", "id", 0);
  EXPECT_TRUE(has(text, R"(celsius_http_requests_total{route="/healthz",method="HEAD",status="200"} 1)")) << text;
  EXPECT_TRUE(has(text, R"(celsius_http_requests_total{route="/convert",method="POST",status="501"} 1)")) << text;
}

}  // namespace
}  // namespace celsius
