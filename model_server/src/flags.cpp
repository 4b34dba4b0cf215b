#include "flags.hpp"

#include <sched.h>

#include <CLI/CLI.hpp>
#include <map>
#include <sstream>
#include <thread>

namespace celsius::serving {

int schedulable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

flags_result parse_flags(int argc, const char* const* argv) {
  flags_result result;
  options& o = result.opts;
  CLI::App app{
      "celsius-model-server: TensorFlow Serving's gRPC and REST APIs for one SavedModel, on TensorFlow's C API.\n"
      "Flags keep tensorflow_model_server's names and defaults; --flag=value and --flag value both work.",
      "celsius-model-server"};
  // A flag given twice: the last one counts (as with TensorFlow's flag parser).
  app.option_defaults()->always_capture_default()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

  app.add_option("--port", o.port, "TCP port for the gRPC API (0: none, unless --celsius_free_ports)");
  app.add_option("--grpc_socket_path", o.grpc_socket_path, "Also serve gRPC on this UNIX socket");
  app.add_option("--grpc_channel_arguments", o.grpc_channel_arguments,
                 "gRPC server arguments, e.g. grpc.max_connection_age_ms=2000,... (ints where they parse)");
  app.add_option("--grpc_max_threads", o.grpc_max_threads, "Max gRPC server threads (default 4 x CPUs)");
  app.add_flag("--enable_grpc_healthcheck_service", o.enable_grpc_healthcheck_service,
               "Serve the standard grpc.health.v1 service");
  app.add_option("--rest_api_port", o.rest_api_port, "Port for the HTTP/REST API (0: none)");
  app.add_option("--rest_api_num_threads", o.rest_api_num_threads,
                 "Threads for HTTP/REST API processing (default 4 x CPUs)");
  app.add_option("--rest_api_timeout_in_ms", o.rest_api_timeout_in_ms, "Timeout for HTTP/REST API calls");
  app.add_flag("--rest_api_enable_cors_support", o.rest_api_enable_cors_support, "Enable CORS headers in response");
  app.add_option("--model_name", o.model_name, "Name of the model");
  app.add_option("--model_base_path", o.model_base_path, "Folder that holds numeric version folders (required)");
  app.add_option("--saved_model_tags", o.saved_model_tags, "Comma-separated tags of the MetaGraphDef to load");
  app.add_option("--file_system_poll_wait_seconds", o.file_system_poll_wait_seconds,
                 "Seconds between polls of the base path for new versions (0: poll once)");
  app.add_option("--max_num_load_retries", o.max_num_load_retries,
                 "Retries after a failed load of a version (0: one attempt)");
  app.add_option("--load_retry_interval_micros", o.load_retry_interval_micros, "Microseconds between load retries");
  app.add_flag("--enable_batching", o.enable_batching, "Batch concurrent Predict calls into one session run");
  app.add_option("--batching_parameters_file", o.batching_parameters_file,
                 "Text BatchingParameters proto (max_batch_size, batch_timeout_micros, ...)");
  app.add_option("--tensorflow_session_parallelism", o.tensorflow_session_parallelism,
                 "Threads for a TensorFlow session (0: auto)");
  app.add_option("--tensorflow_intra_op_parallelism", o.tensorflow_intra_op_parallelism,
                 "Threads to parallelize one op (0: auto)");
  app.add_option("--tensorflow_inter_op_parallelism", o.tensorflow_inter_op_parallelism,
                 "Ops run at the same time (0: auto)");
  app.add_flag("--enable_serialization_as_tensor_content", o.enable_serialization_as_tensor_content,
               "gRPC Predict answers carry tensor_content instead of typed *_val fields");
  app.add_option("--monitoring_config_file", o.monitoring_config_file,
                 "Text MonitoringConfig proto (prometheus_config { enable: true path: ... })");
  app.add_flag("--version", o.version, "Print the versions and exit");

  app.add_flag("--celsius_free_ports", o.celsius_free_ports,
               "Test aid: a port given as 0 is picked by the OS (gRPC and REST) and logged");
  app.add_option("--celsius_bind_address", o.celsius_bind_address,
                 "Test aid: the address both APIs listen on (TF Serving: every interface)");
  app.add_option("--celsius_reply_delay_ms", o.celsius_reply_delay_ms, "Test aid: answer every Predict this late")
      ->check(CLI::Range(0, 3'600'000));
  app.add_flag("--celsius_malformed_replies", o.celsius_malformed_replies,
               "Test aid: wrong-shaped REST predictions, DT_FLOAT-labelled gRPC outputs");

  // Accepted for compatibility; they change nothing here (logged at start).
  static const char* const no_effect_options[] = {"model_config_file_poll_wait_seconds",
                                                  "num_load_threads",
                                                  "num_unload_threads",
                                                  "tensorflow_session_config_file",
                                                  "per_process_gpu_memory_fraction",
                                                  "num_request_iterations_for_warmup",
                                                  "num_tflite_pools",
                                                  "num_tflite_interpreters_per_pool",
                                                  "thread_pool_factory_config_file",
                                                  "mixed_precision"};
  static const char* const no_effect_flags[] = {"allow_version_labels_for_unavailable_models",
                                                "enable_per_model_batching_parameters",
                                                "flush_filesystem_caches",
                                                "enable_model_warmup",
                                                "remove_unused_fields_from_bundle_metagraph",
                                                "prefer_tflite_model",
                                                "enable_signature_method_name_check",
                                                "xla_cpu_compilation_enabled",
                                                "xla_gpu_compilation_enabled",
                                                "enable_profiler",
                                                "skip_initialize_tpu"};
  static const char* const refused[] = {"model_config_file", "platform_config_file", "ssl_config_file"};
  std::map<std::string, std::string> strings;
  std::map<std::string, bool> bools;
  std::vector<std::pair<std::string, CLI::Option*>> compat;
  for (const char* name : no_effect_options) {
    compat.emplace_back(name, app.add_option(std::string("--") + name, strings[name],
                                             "tensorflow_model_server flag, accepted without effect here")
                                  ->group("Accepted without effect"));
  }
  for (const char* name : no_effect_flags) {
    compat.emplace_back(name, app.add_flag(std::string("--") + name, bools[name],
                                           "tensorflow_model_server flag, accepted without effect here")
                                  ->group("Accepted without effect"));
  }
  std::vector<std::pair<std::string, CLI::Option*>> refusals;
  for (const char* name : refused) {
    refusals.emplace_back(
        name, app.add_option(std::string("--") + name, strings[name], "not supported (refused)")->group("Refused"));
  }
  refusals.emplace_back("use_alts_credentials",
                        app.add_flag("--use_alts_credentials", bools["use_alts_credentials"], "not supported (refused)")
                            ->group("Refused"));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::ostringstream out, err;
    result.exit_code = app.exit(e, out, err);
    result.output = out.str() + err.str();
    return result;
  }
  for (const auto& [name, option] : refusals) {
    if (option->count() == 0) continue;
    result.exit_code = 2;
    result.output = "--" + name +
                    " is not supported by celsius-model-server: it serves one model (--model_name, "
                    "--model_base_path) over plain TCP. See model_server/README.md.\n";
    return result;
  }
  for (const auto& [name, option] : compat) {
    if (option->count() == 0) continue;
    const auto& values = option->results();
    o.no_effect.push_back("--" + name + (values.empty() ? std::string() : "=" + values.back()));
  }
  if (!o.version && o.model_base_path.empty()) {
    result.exit_code = 2;
    result.output = "--model_base_path is required (the folder that holds the numeric version folders)\n";
    return result;
  }
  const int cpus = schedulable_cpus();
  if (o.grpc_max_threads <= 0) o.grpc_max_threads = 4 * cpus;
  if (o.rest_api_num_threads <= 0) o.rest_api_num_threads = 4 * cpus;
  return result;
}

}  // namespace celsius::serving
