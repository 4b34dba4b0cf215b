#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "model_client.hpp"

namespace celsius {

struct grpc_model_options {
  std::string target;  // host:port
  std::string model_name = "f2c";
  std::optional<std::int64_t> model_version;  // latest when empty
  std::chrono::milliseconds timeout{1000};
};

// TensorFlow Serving over gRPC: one shared channel and stub, the callback API, a deadline
// per call. Keepalive pings only on active calls and at most every 5 minutes (a stock TF
// Serving answers more frequent pings with GOAWAY "too_many_pings"); short reconnect
// backoff so the client recovers within a second of the model server coming back.
std::unique_ptr<model_client> make_grpc_model_client(const grpc_model_options& options);

}  // namespace celsius
