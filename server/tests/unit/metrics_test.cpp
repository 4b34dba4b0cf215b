#include "metrics.hpp"

#include <gtest/gtest.h>

namespace celsius {
namespace {

using std::chrono::microseconds;

bool has(const std::string& text, const std::string& line) { return text.find(line + "\n") != std::string::npos; }

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

}  // namespace
}  // namespace celsius
