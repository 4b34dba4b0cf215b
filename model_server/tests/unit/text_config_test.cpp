// Text-format config files, as TF Serving reads them.
#include "text_config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace celsius::serving {
namespace {

class text_file : public ::testing::Test {
 protected:
  std::string write(const std::string& text) {
    std::ofstream(path_) << text;
    return path_.string();
  }
  ~text_file() override { std::filesystem::remove(path_); }
  std::filesystem::path path_ =
      std::filesystem::temp_directory_path() / ("celsius-text-config-" + std::to_string(::getpid()) + ".pbtxt");
};

TEST_F(text_file, batching_parameters_over_the_defaults) {
  tensorflow::serving::BatchingParameters p;
  std::vector<std::string> ignored;
  ASSERT_TRUE(read_text_proto(write("max_batch_size { value: 128 }\nbatch_timeout_micros { value: 500 }\n"
                                    "num_batch_threads { value: 2 }\n"),
                              p, ignored)
                  .ok());
  batching_options o;
  ASSERT_TRUE(batching_options_from(p, 4, o).ok());
  EXPECT_EQ(o.max_batch_size, 128);
  EXPECT_EQ(o.batch_timeout_micros, 500);
  EXPECT_EQ(o.max_enqueued_batches, 10);  // BasicBatchScheduler's default
  EXPECT_EQ(o.num_batch_threads, 2);
  ASSERT_TRUE(batching_options_from(tensorflow::serving::BatchingParameters(), 4, o).ok());
  EXPECT_EQ(o.max_batch_size, 1000);
  EXPECT_EQ(o.num_batch_threads, 4);
  EXPECT_TRUE(ignored.empty());
}

TEST_F(text_file, fields_of_later_releases_are_ignored_and_reported) {
  tensorflow::serving::BatchingParameters p;
  std::vector<std::string> ignored;
  ASSERT_TRUE(
      read_text_proto(write("max_batch_size { value: 8 }\nenable_large_batch_splitting { value: true }\n"), p, ignored)
          .ok());
  EXPECT_EQ(p.max_batch_size().value(), 8);
  ASSERT_EQ(ignored.size(), 1u);
  EXPECT_NE(ignored[0].find("enable_large_batch_splitting"), std::string::npos) << ignored[0];
}

TEST_F(text_file, errors) {
  tensorflow::serving::MonitoringConfig m;
  std::vector<std::string> ignored;
  const status bad = read_text_proto(write("prometheus_config { enable: maybe }"), m, ignored);
  EXPECT_EQ(bad.error_code(), code::INVALID_ARGUMENT);
  EXPECT_EQ(bad.message().rfind("Invalid protobuf file: '" + path_.string() + "'", 0), 0u) << bad.message();
  EXPECT_EQ(read_text_proto("/nonexistent/monitoring.config", m, ignored).error_code(), code::NOT_FOUND);
  ASSERT_TRUE(read_text_proto(write("prometheus_config { enable: true path: \"/metrics\" }"), m, ignored).ok());
  EXPECT_TRUE(m.prometheus_config().enable());
  EXPECT_EQ(m.prometheus_config().path(), "/metrics");
}

TEST(batching_options, are_checked) {
  tensorflow::serving::BatchingParameters p;
  batching_options o;
  p.mutable_max_batch_size()->set_value(8);
  p.add_allowed_batch_sizes(4);
  p.add_allowed_batch_sizes(2);
  EXPECT_EQ(batching_options_from(p, 1, o).message(), "allowed_batch_sizes entries must be monotonically increasing");
  p.clear_allowed_batch_sizes();
  p.add_allowed_batch_sizes(2);
  p.add_allowed_batch_sizes(4);
  EXPECT_EQ(batching_options_from(p, 1, o).message(), "final entry in allowed_batch_sizes must equal max_batch_size");
  p.add_allowed_batch_sizes(8);
  EXPECT_TRUE(batching_options_from(p, 1, o).ok());
  p.mutable_num_batch_threads()->set_value(0);
  EXPECT_FALSE(batching_options_from(p, 1, o).ok());
}

}  // namespace
}  // namespace celsius::serving
