// tensorflow_model_server's flag names and defaults; compatibility flags; refusals.
#include "flags.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace celsius::serving {
namespace {

flags_result parse(std::vector<const char*> args) {
  args.insert(args.begin(), "celsius-model-server");
  return parse_flags(static_cast<int>(args.size()), args.data());
}

TEST(flags, defaults_are_tensorflow_model_servers) {
  const auto r = parse({"--model_base_path=/models/f2c"});
  ASSERT_EQ(r.exit_code, -1) << r.output;
  const options& o = r.opts;
  EXPECT_EQ(o.port, 8500);
  EXPECT_EQ(o.rest_api_port, 0);
  EXPECT_EQ(o.rest_api_timeout_in_ms, 30000);
  EXPECT_EQ(o.model_name, "default");
  EXPECT_EQ(o.file_system_poll_wait_seconds, 1);
  EXPECT_EQ(o.max_num_load_retries, 5);
  EXPECT_EQ(o.load_retry_interval_micros, 60'000'000);
  EXPECT_EQ(o.saved_model_tags, "serve");
  EXPECT_FALSE(o.enable_batching);
  EXPECT_FALSE(o.enable_grpc_healthcheck_service);
  EXPECT_EQ(o.rest_api_num_threads, 4 * schedulable_cpus());
  EXPECT_EQ(o.grpc_max_threads, 4 * schedulable_cpus());
  EXPECT_EQ(o.celsius_bind_address, "0.0.0.0");
}

TEST(flags, both_spellings_and_boolean_values) {
  const auto r =
      parse({"--port", "9000", "--rest_api_port=9001", "--model_name=f2c", "--model_base_path", "/m",
             "--enable_batching=true", "--rest_api_enable_cors_support", "--enable_grpc_healthcheck_service=false"});
  ASSERT_EQ(r.exit_code, -1) << r.output;
  EXPECT_EQ(r.opts.port, 9000);
  EXPECT_EQ(r.opts.rest_api_port, 9001);
  EXPECT_EQ(r.opts.model_name, "f2c");
  EXPECT_TRUE(r.opts.enable_batching);
  EXPECT_TRUE(r.opts.rest_api_enable_cors_support);
  EXPECT_FALSE(r.opts.enable_grpc_healthcheck_service);
}

TEST(flags, the_last_of_a_repeated_flag_counts) {
  const auto r =
      parse({"--port", "0", "--model_base_path=/m", "--port=9000", "--celsius_free_ports", "--celsius_free_ports"});
  ASSERT_EQ(r.exit_code, -1) << r.output;
  EXPECT_EQ(r.opts.port, 9000);
  EXPECT_TRUE(r.opts.celsius_free_ports);
}

TEST(flags, flags_without_effect_are_accepted_and_listed) {
  const auto r = parse(
      {"--model_base_path=/m", "--enable_model_warmup=false", "--num_load_threads=4", "--xla_cpu_compilation_enabled"});
  ASSERT_EQ(r.exit_code, -1) << r.output;
  EXPECT_EQ(r.opts.no_effect.size(), 3u);
  EXPECT_NE(std::find(r.opts.no_effect.begin(), r.opts.no_effect.end(), "--num_load_threads=4"),
            r.opts.no_effect.end());
}

TEST(flags, flags_that_would_change_what_is_served_are_refused) {
  for (const char* f :
       {"--model_config_file=/c", "--ssl_config_file=/s", "--platform_config_file=/p", "--use_alts_credentials"}) {
    const auto r = parse({"--model_base_path=/m", f});
    EXPECT_EQ(r.exit_code, 2) << f;
    EXPECT_NE(r.output.find("not supported"), std::string::npos) << r.output;
  }
}

TEST(flags, unknown_flags_and_bad_values_are_errors) {
  EXPECT_GT(parse({"--model_base_path=/m", "--no_such_flag=1"}).exit_code, 0);
  EXPECT_GT(parse({"--model_base_path=/m", "--port=eighty"}).exit_code, 0);
  EXPECT_GT(parse({"--model_base_path=/m", "--celsius_reply_delay_ms=-1"}).exit_code, 0);
  const auto missing = parse({"--port=1"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("--model_base_path is required"), std::string::npos);
  const auto help = parse({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  for (const char* name : {"--port", "--rest_api_port", "--model_name", "--model_base_path", "--enable_batching",
                           "--batching_parameters_file", "--monitoring_config_file", "--rest_api_num_threads",
                           "--rest_api_timeout_in_ms", "--grpc_channel_arguments", "--file_system_poll_wait_seconds",
                           "--celsius_free_ports", "--celsius_reply_delay_ms", "--celsius_malformed_replies"}) {
    EXPECT_NE(help.output.find(name), std::string::npos) << name;
  }
}

}  // namespace
}  // namespace celsius::serving
