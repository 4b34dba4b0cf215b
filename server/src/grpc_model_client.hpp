#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "model_client.hpp"

namespace tensorflow::serving {
class PredictResponse;
}

namespace celsius {

struct grpc_model_options {
  // A gRPC target: `dns:///host:port` (what the service passes: every address the name
  // resolves to gets a connection, calls go round-robin) or any form gRPC accepts
  // (`host:port`, `ipv4:a:p,b:p`, `unix:path`).
  std::string target;
  std::string model_name = "f2c";
  std::optional<std::int64_t> model_version;  // latest when empty
  std::chrono::milliseconds timeout{1000};
};

// TensorFlow Serving over gRPC: one shared channel and stub, the callback API, a deadline
// per call. Client-side load balancing: `round_robin` over every address the target
// resolves to (a Kubernetes headless Service name gives one address per model-server pod),
// with DNS re-resolved whenever a connection drops (at most once a second), so pods that
// come and go are picked up once the model server limits connection age (TF Serving:
// `--grpc_channel_arguments=grpc.max_connection_age_ms=...`). Keepalive pings only on
// active calls and at most every 5 minutes (a stock TF Serving answers more frequent pings
// with GOAWAY "too_many_pings"); reconnect backoff from 100 ms up to 1 s, so the client
// recovers within about a second of the model server coming back; a connection attempt
// may take up to 20 s (gRPC's default), so a model server that accepts slowly is waited
// for (each call still ends at its own deadline) rather than abandoned.
std::unique_ptr<model_client> make_grpc_model_client(const grpc_model_options& options);

// Reads `outputs["celsius"]` of a Predict reply to a request of `expected` values, checked
// against the request before anything is trusted (TensorFlow's tensor.proto rules,
// core/framework/tensor.cc FromProto):
//   dtype DT_DOUBLE; tensor_shape exactly [expected] (rank 1, not unknown_rank);
//   values either in tensor_content (exactly expected * 8 bytes, little-endian, and no
//   double_val beside it) or in double_val: `expected` of them, or exactly one, which
//   TensorFlow repeats over the shape (`tf.make_tensor_proto(42.0, shape=[3])` writes
//   that). Other counts, which TensorFlow would pad with the last value or cut, are no
//   encoder's output: they mean a faulty peer.
//   model_spec, when the reply names one: the requested name, and the pinned version
//   when `version` is set.
// Anything else is model_failure::malformed with a message saying what did not fit.
predict_result read_predict_response(const tensorflow::serving::PredictResponse& response, std::size_t expected,
                                     std::string_view model_name, std::optional<std::int64_t> version);

}  // namespace celsius
