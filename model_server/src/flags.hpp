#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace celsius::serving {

// tensorflow_model_server's flags (model_servers/main.cc, server.h Server::Options), with
// its names and defaults. Three kinds (README, "Flags"):
//   - implemented: the fields below;
//   - accepted and logged, without effect here (warmup, TFLite, TPU, XLA, profiler, GPU,
//     thread pools, ...): listed in `no_effect`;
//   - refused, because serving on would silently differ from what was asked
//     (--model_config_file, --platform_config_file, --ssl_config_file,
//     --use_alts_credentials): parse_flags fails with a message.
// Flags the real binary does not know either are refused (it prints "unknown argument" and
// starts anyway).
struct options {
  // gRPC
  int port = 8500;  // 0: no gRPC port (unless --celsius_free_ports)
  std::string grpc_socket_path;
  std::string grpc_channel_arguments;  // "key=value,key=value"
  int grpc_max_threads = 0;            // 0 here means 4 x the schedulable CPUs (TF Serving's default)
  bool enable_grpc_healthcheck_service = false;
  // REST
  int rest_api_port = 0;         // 0: no REST API (unless --celsius_free_ports)
  int rest_api_num_threads = 0;  // 0 here means 4 x the schedulable CPUs
  int rest_api_timeout_in_ms = 30000;
  bool rest_api_enable_cors_support = false;
  // Model
  std::string model_name = "default";
  std::string model_base_path;
  std::string saved_model_tags = "serve";
  int file_system_poll_wait_seconds = 1;
  int max_num_load_retries = 5;
  std::int64_t load_retry_interval_micros = 60'000'000;
  // Batching
  bool enable_batching = false;
  std::string batching_parameters_file;
  // TensorFlow session
  std::int64_t tensorflow_session_parallelism = 0;
  std::int64_t tensorflow_intra_op_parallelism = 0;
  std::int64_t tensorflow_inter_op_parallelism = 0;
  // Answers
  bool enable_serialization_as_tensor_content = false;
  std::string monitoring_config_file;
  bool version = false;

  // Test aids, celsius-model-server only:
  bool celsius_free_ports = false;               // a port given as 0 is picked by the OS (gRPC and REST) and logged
  std::string celsius_bind_address = "0.0.0.0";  // TF Serving listens on every interface; tests use 127.0.0.1
  int celsius_reply_delay_ms = 0;                // every Predict answers this much later (a slow model server)
  bool celsius_malformed_replies = false;        // wrong-shaped REST predictions, DT_FLOAT-labelled gRPC outputs

  std::vector<std::string> no_effect;  // "--name=value" of each accepted flag without effect here
};

struct flags_result {
  options opts;
  int exit_code = -1;  // >= 0: print `output` and exit with it (--help, bad flags)
  std::string output;
};

flags_result parse_flags(int argc, const char* const* argv);

// The schedulable CPUs of this process (sched_getaffinity), at least 1.
int schedulable_cpus();

}  // namespace celsius::serving
