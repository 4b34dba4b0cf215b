// celsius-model-server: TensorFlow Serving's gRPC and REST APIs for one SavedModel, run by
// TensorFlow's own runtime through its C API (tf_api.hpp). Wires flags, TensorFlow, the
// version manager, batching and the two front ends together, then waits for SIGTERM/SIGINT.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <absl/synchronization/mutex.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

#include "batching.hpp"
#include "flags.hpp"
#include "grpc_server.hpp"
#include "metrics.hpp"
#include "model_manager.hpp"
#include "predictor.hpp"
#include "rest_server.hpp"
#include "saved_model.hpp"
#include "tensorflow_meta_graph.pb.h"
#include "text_config.hpp"
#include "tf_api.hpp"
#include "version.hpp"

namespace {

using namespace celsius::serving;

// How long SIGTERM waits for requests in flight before the process exits anyway (below
// Docker's and Kubernetes' default 10 s before SIGKILL).
constexpr std::chrono::milliseconds drain_grace{8000};

int fail_start(const std::string& message) {
  // model_servers/main.cc: "Failed to start server. Error: <status>", exit code -1.
  std::fflush(stderr);
  std::cout << "Failed to start server. Error: " << message << "\n" << std::flush;
  spdlog::error("Failed to start server. Error: {}", message);
  return 255;
}

// Where TensorFlow's two libraries are looked for, in order.
std::vector<std::string> library_dirs() {
  std::vector<std::string> dirs;
  // Read once at start, before any other thread exists.
  const char* env = std::getenv("CELSIUS_TENSORFLOW_DIR");  // NOLINT(concurrency-mt-unsafe)
  if (env != nullptr && *env != '\0') dirs.emplace_back(env);
  dirs.emplace_back(CELSIUS_TENSORFLOW_BUILD_DIR);  // the wheel this binary was built against
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) dirs.push_back((self.parent_path().parent_path() / "lib" / "tensorflow").string());  // images
  dirs.emplace_back("");  // LD_LIBRARY_PATH, ld.so.cache
  return dirs;
}

std::vector<std::string> split_tags(const std::string& text) {
  std::vector<std::string> tags;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    if (comma > start) tags.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return tags;
}

// The signal thread: sigwait for SIGTERM/SIGINT (blocked in every thread), then `on_signal`.
class signal_waiter {
 public:
  signal_waiter() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGUSR1);                   // only to wake the thread for exit
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);  // before any other thread exists
  }
  template <typename F>
  void start(F on_signal) {
    thread_ = std::thread([this, on_signal] {
      int sig = 0;
      sigwait(&set_, &sig);
      if (sig == SIGUSR1) return;  // woken up to exit (the server stopped on its own)
      spdlog::info("Received signal {} ({}), shutting down", sig, sig == SIGTERM ? "SIGTERM" : "SIGINT");
      on_signal();
    });
  }
  ~signal_waiter() {
    if (thread_.joinable()) {
      pthread_kill(thread_.native_handle(), SIGUSR1);
      thread_.join();
    }
  }

 private:
  sigset_t set_{};
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  const flags_result flags = parse_flags(argc, argv);
  if (flags.exit_code >= 0) {
    (flags.exit_code == 0 ? std::cout : std::cerr) << flags.output << std::flush;
    return flags.exit_code;
  }
  const options& o = flags.opts;

  // Debian's abseil is built without NDEBUG, so every absl::Mutex that gRPC locks also updates
  // abseil's lock-order graph for deadlock detection (GraphCycles::InsertEdge, GetId, ...):
  // about 2% of the server's CPU per gRPC Predict in a profile (perf, model-server-bench.sh's
  // gRPC row). Release builds of abseil (and so TF Serving's) do not track it; off here too.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  auto logger = spdlog::stderr_logger_mt("celsius-model-server");
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%f: %L celsius-model-server] %v");
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);

  signal_waiter signals;  // blocks SIGTERM/SIGINT in every thread started from here on

  std::string error;
  const std::unique_ptr<tf_library> tf = tf_library::open(library_dirs(), error);
  if (o.version) {
    std::cout << "TensorFlow ModelServer: celsius-model-server " << celsius::version << "\n"
              << "TensorFlow Library: " << (tf ? tf->version() : "not found") << "\n";
    return tf ? 0 : 1;
  }
  for (const auto& f : o.no_effect) {
    spdlog::warn("{}: accepted for compatibility with tensorflow_model_server; it has no effect here", f);
  }
  if (!tf) return fail_start(error);
  spdlog::info("TensorFlow {} (C API) from {}", tf->version(), tf->directory());

  // Batching parameters (server.cc: a file without --enable_batching is an error).
  std::optional<batching_options> batching;
  if (!o.batching_parameters_file.empty() && !o.enable_batching) {
    return fail_start(
        "INVALID_ARGUMENT: server_options.batching_parameters_file is set without setting "
        "server_options.enable_batching to true.");
  }
  if (o.enable_batching) {
    tensorflow::serving::BatchingParameters params;
    if (o.batching_parameters_file.empty()) {
      params.mutable_thread_pool_name()->set_value("model_server_batch_threads");
    } else {
      std::vector<std::string> ignored;
      if (status s = read_text_proto(o.batching_parameters_file, params, ignored); !s.ok()) {
        return fail_start(std::string(code_name(s.error_code())) + ": " + s.message());
      }
      for (const auto& i : ignored) spdlog::warn("{}: {} (ignored)", o.batching_parameters_file, i);
    }
    batching.emplace();
    if (status s = batching_options_from(params, schedulable_cpus(), *batching); !s.ok()) {
      return fail_start(std::string(code_name(s.error_code())) + ": " + s.message());
    }
    spdlog::info("Batching: max_batch_size {}, batch_timeout_micros {}, max_enqueued_batches {}, num_batch_threads {}",
                 batching->max_batch_size, batching->batch_timeout_micros, batching->max_enqueued_batches,
                 batching->num_batch_threads);
  }
  tensorflow::serving::MonitoringConfig monitoring;
  if (!o.monitoring_config_file.empty()) {
    std::vector<std::string> ignored;
    if (status s = read_text_proto(o.monitoring_config_file, monitoring, ignored); !s.ok()) {
      return fail_start(std::string(code_name(s.error_code())) + ": " + s.message());
    }
    for (const auto& i : ignored) spdlog::warn("{}: {} (ignored)", o.monitoring_config_file, i);
  }
  // Session threads (server.cc): session parallelism, or intra/inter op separately.
  tensorflow::ConfigProto session_config;
  if (o.tensorflow_intra_op_parallelism > 0 && o.tensorflow_inter_op_parallelism > 0 &&
      o.tensorflow_session_parallelism > 0) {
    return fail_start(
        "INVALID_ARGUMENT: Either configure server_options.tensorflow_session_parallelism or "
        "(server_options.tensorflow_intra_op_parallelism, server_options.tensorflow_inter_op_parallelism) "
        "separately. You cannot configure all.");
  }
  if (o.tensorflow_intra_op_parallelism > 0 || o.tensorflow_inter_op_parallelism > 0) {
    session_config.set_intra_op_parallelism_threads(static_cast<int>(o.tensorflow_intra_op_parallelism));
    session_config.set_inter_op_parallelism_threads(static_cast<int>(o.tensorflow_inter_op_parallelism));
  } else {
    session_config.set_intra_op_parallelism_threads(static_cast<int>(o.tensorflow_session_parallelism));
    session_config.set_inter_op_parallelism_threads(static_cast<int>(o.tensorflow_session_parallelism));
  }
  // 0 is TensorFlow's default (a pool of one thread per CPU each); a negative inter-op value
  // runs every TF_SessionRun in the thread that calls it (tensorflow/core/protobuf/config.proto),
  // e.g. --tensorflow_intra_op_parallelism=1 --tensorflow_inter_op_parallelism=-1 (README,
  // "Performance"). TF Serving's flags take it the same way (server.cc), and its defaults stay.
  spdlog::info("TensorFlow session: intra_op_parallelism_threads {}, inter_op_parallelism_threads {}",
               session_config.intra_op_parallelism_threads(), session_config.inter_op_parallelism_threads());
  std::vector<channel_argument> channel_arguments;
  if (!parse_channel_arguments(o.grpc_channel_arguments, channel_arguments, error)) return fail_start(error);

  const std::string config_bytes = session_config.SerializeAsString();
  const std::vector<std::string> tags = split_tags(o.saved_model_tags);
  model_manager models({o.model_name, o.model_base_path, o.file_system_poll_wait_seconds, o.max_num_load_retries,
                        std::chrono::microseconds(std::max<std::int64_t>(o.load_retry_interval_micros, 0))},
                       [&](const std::filesystem::path& dir, std::unique_ptr<saved_model>& out) {
                         return saved_model::load(*tf, dir.string(), tags, config_bytes, out);
                       });

  std::atomic<bool> stop_requested{false};
  std::mutex stop_mutex;
  std::condition_variable stop_cv;
  signals.start([&] {
    models.request_stop();  // wakes a first load that is still waiting or retrying
    {
      std::lock_guard lock(stop_mutex);
      stop_requested = true;
    }
    stop_cv.notify_all();
  });

  // Ports open only once a version is available (as ServerCore::Create waits for it).
  if (status s = models.start(); !s.ok()) {
    if (s.error_code() == code::CANCELLED) return 0;
    return fail_start(std::string(code_name(s.error_code())) + ": " + s.message());
  }

  serving_metrics metrics;
  std::unique_ptr<batch_scheduler> scheduler;
  if (batching) scheduler = std::make_unique<batch_scheduler>(*batching, metrics);
  predictor::settings predict_settings;
  predict_settings.reply_delay = std::chrono::milliseconds(o.celsius_reply_delay_ms);
  predict_settings.as_content = o.enable_serialization_as_tensor_content;
  predictor predict(models, scheduler.get(), metrics, predict_settings);

  const std::string& address = o.celsius_bind_address;
  std::unique_ptr<grpc_front> grpc;
  int grpc_port = 0;
  if (o.port != 0 || o.celsius_free_ports) {
    grpc_settings g;
    g.address = address + ":" + std::to_string(o.port);
    g.socket_path = o.grpc_socket_path;
    g.channel_arguments = channel_arguments;
    g.max_threads = o.grpc_max_threads;
    g.health_service = o.enable_grpc_healthcheck_service;
    g.malformed_replies = o.celsius_malformed_replies;
    grpc = std::make_unique<grpc_front>(predict, g);
    grpc_port = grpc->start(error);
    if (grpc_port == 0) return fail_start("INVALID_ARGUMENT: " + error + " at " + g.address);
    spdlog::info("Running gRPC ModelServer at {}:{} ...", address, grpc_port);
    if (!o.grpc_socket_path.empty()) spdlog::info("Running gRPC ModelServer at UNIX socket {} ...", o.grpc_socket_path);
  }
  std::unique_ptr<rest_server> rest;
  if (o.rest_api_port != 0 || o.celsius_free_ports) {
    if (o.rest_api_port != 0 && o.rest_api_port == o.port) {
      spdlog::error(
          "server_options.http_port cannot be same as grpc_port. Please use a different port for HTTP/REST API. "
          "Skipped exporting HTTP/REST API.");
    } else {
      rest_settings r;
      r.address = address;
      r.port = o.rest_api_port;
      r.threads = o.rest_api_num_threads;
      r.timeout_ms = o.rest_api_timeout_in_ms;
      r.cors = o.rest_api_enable_cors_support;
      r.malformed_replies = o.celsius_malformed_replies;
      if (monitoring.prometheus_config().enable()) {
        r.prometheus_path = monitoring.prometheus_config().path().empty() ? "/monitoring/prometheus/metrics"
                                                                          : monitoring.prometheus_config().path();
      }
      rest = std::make_unique<rest_server>(predict, metrics, r);
      const int rest_port = rest->start(error);
      if (rest_port == 0)
        return fail_start("Failed to start HTTP Server at localhost:" + std::to_string(r.port) + ": " + error);
      spdlog::info("Exporting HTTP/REST API at:localhost:{} ...", rest_port);
    }
  }

  {
    std::unique_lock lock(stop_mutex);
    stop_cv.wait(lock, [&] { return stop_requested.load(); });
  }
  // Drain: both front ends stop taking requests and finish those in flight (in parallel,
  // within drain_grace); queued batches run at once and delayed answers still come; then
  // the rest, in the order that leaves nothing to answer into a destroyed front end.
  if (scheduler) scheduler->flush();
  std::thread grpc_stop([&] {
    if (grpc) grpc->shutdown(drain_grace);
  });
  if (rest) rest->shutdown(drain_grace);
  grpc_stop.join();
  predict.stop();
  if (scheduler) scheduler->stop();
  rest.reset();
  grpc.reset();
  models.stop();
  spdlog::info("Server stopped");
  return 0;
}
