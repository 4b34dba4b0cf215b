// The Prometheus page in TF Serving's exporter format.
#include "metrics.hpp"

#include <gtest/gtest.h>

namespace celsius::serving {
namespace {

TEST(metrics, exponential_buckets_like_tensorflow) {
  const auto b = exponential_buckets(10, 1.8, 3);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_DOUBLE_EQ(b[0], 10);
  EXPECT_DOUBLE_EQ(b[1], 18);
  EXPECT_DOUBLE_EQ(b[2], 32.4);
}

TEST(metrics, histogram_buckets_hold_values_up_to_their_limit) {
  histogram h({1, 2, 4});
  for (double v : {0.5, 1.0, 3.0, 100.0}) h.observe(v);
  const auto s = h.read();
  EXPECT_EQ(s.counts, (std::vector<std::uint64_t>{2, 0, 1, 1}));
  EXPECT_DOUBLE_EQ(s.sum, 104.5);
}

TEST(metrics, page_has_tf_servings_names_and_shapes) {
  serving_metrics m;
  m.request("f2c", "OK", "GRPC", 120);
  m.request("f2c", "NOT_FOUND", "REST", 15);
  m.runtime("f2c", 30);
  m.input_batch(1);
  m.input_batch(3);
  m.processed_batch(4, 0);
  const std::string page = m.prometheus_text();
  EXPECT_NE(page.find("# TYPE :tensorflow:serving:request_count counter\n"), std::string::npos) << page;
  EXPECT_NE(page.find(":tensorflow:serving:request_count{model_name=\"f2c\",status=\"OK\"} 1\n"), std::string::npos);
  EXPECT_NE(page.find(":tensorflow:serving:request_count{model_name=\"f2c\",status=\"NOT_FOUND\"} 1\n"),
            std::string::npos);
  EXPECT_NE(page.find(":tensorflow:serving:request_latency_bucket{model_name=\"f2c\",API=\"Predict\",entrypoint="
                      "\"GRPC\",le=\"10\"} 0\n"),
            std::string::npos);
  EXPECT_NE(page.find(":tensorflow:serving:request_latency_count{model_name=\"f2c\",API=\"Predict\",entrypoint="
                      "\"GRPC\"} 1\n"),
            std::string::npos);
  EXPECT_NE(page.find(":tensorflow:serving:batching_session:processed_batch_size_sum{} 4\n"), std::string::npos);
  EXPECT_NE(page.find(":tensorflow:serving:batching_session:input_batch_size_count{} 2\n"), std::string::npos);
  EXPECT_NE(page.find(":tensorflow:serving:batching_session:processed_batch_size_bucket{le=\"4\"} 1\n"),
            std::string::npos);
  EXPECT_NE(page.find("le=\"+Inf\"} 1\n"), std::string::npos);
  EXPECT_NE(page.find(":tensorflow:serving:batching_session:padding_size_count{execution_batch_size=\"4\"} 1\n"),
            std::string::npos);
}

}  // namespace
}  // namespace celsius::serving
