#pragma once

#include <grpcpp/completion_queue.h>
#include <grpcpp/server.h>

#include <atomic>
#include <chrono>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "predictor.hpp"
#include "status.hpp"
#include "tensorflow_serving.grpc.pb.h"

namespace celsius::serving {

// "key=value,key=value" into gRPC channel arguments, the way TF Serving's server.cc reads
// --grpc_channel_arguments: a value that parses as a 32-bit integer is passed as an int,
// anything else as a string. An entry without '=' is an error.
struct channel_argument {
  std::string key;
  std::string value;
  bool is_int = false;
  int int_value = 0;
};
bool parse_channel_arguments(const std::string& text, std::vector<channel_argument>& out, std::string& error);

struct grpc_settings {
  std::string address;      // "0.0.0.0:8500"
  std::string socket_path;  // also listen on unix:<path> when set
  std::vector<channel_argument> channel_arguments;
  int max_threads = 0;          // gRPC's resource quota (TF Serving's --grpc_max_threads)
  bool health_service = false;  // grpc.health.v1 (--enable_grpc_healthcheck_service)
  bool malformed_replies = false;
};

// PredictionService (Predict, GetModelMetadata) and ModelService (GetModelStatus) with gRPC's
// async completion-queue API: one completion queue per thread, each thread takes the calls
// of its queue and runs their handlers (a Predict's model run too, unless batching or the
// reply delay answers it later from another thread). No receive or send size limit (TF
// Serving: SetMaxMessageSize(INT_MAX)); the call's deadline becomes the model run's timeout.
class grpc_front {
 public:
  grpc_front(predictor& p, grpc_settings s);
  // Calls shutdown(0) if not done; then waits for every handler to answer (stop the
  // predictor first, so none is still queued), and joins the threads.
  ~grpc_front();
  grpc_front(const grpc_front&) = delete;
  grpc_front& operator=(const grpc_front&) = delete;

  // The bound TCP port (0 when binding failed); `error` set on failure.
  int start(std::string& error);
  // Health NOT_SERVING, no new calls, calls in flight finish within `grace`, then cancelled.
  void shutdown(std::chrono::milliseconds grace);

  class call;  // one call in flight (grpc_server.cpp)

 private:
  predictor& predictor_;
  grpc_settings settings_;
  tensorflow::serving::PredictionService::AsyncService prediction_;
  tensorflow::serving::ModelService::AsyncService model_;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::thread> threads_;
  std::atomic<int> handling_{0};  // handlers that have not called Finish yet
  bool shut_down_ = false;
};

}  // namespace celsius::serving
