#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "model_client.hpp"

namespace celsius {

struct rest_model_options {
  std::string host;
  std::uint16_t port = 8501;
  std::string model_name = "f2c";
  std::optional<std::int64_t> model_version;  // latest when empty
  std::chrono::milliseconds timeout{1000};
  std::size_t max_idle_connections = 64;
  // A pooled connection idle this long is closed instead of reused: shorter than the idle
  // timeouts servers commonly use (2 s gunicorn, 5 s Node.js/Apache/uvicorn, 75 s nginx),
  // so the client rarely sends on a connection the server is closing. 0: no pooling.
  std::chrono::milliseconds max_idle_age{1000};
};

// TensorFlow Serving over REST: an async Beast client on its own event-loop thread with
// a pool of keep-alive connections (most recently used first). A pooled connection is
// used only if it has been idle less than max_idle_age and a non-blocking peek finds
// neither a close nor stray bytes from the server. A request that still fails on a
// reused connection before any byte of the answer (the server closed it as the request
// went out) is retried once on a NEW connection, never on another pooled one;
// predictions are idempotent.
std::unique_ptr<model_client> make_rest_model_client(const rest_model_options& options);

// Reads a `:predict` answer in row form, `{"predictions": [c, ...]}`, as TF Serving writes
// it: pretty-printed, doubles with 6 or 17 significant digits, bare NaN/Infinity tokens.
// Every number is read exactly (correctly rounded). `expected` is the number of inputs.
predict_result parse_rest_predictions(std::string_view body, std::size_t expected);

// Reads the `{"error": "..."}` message of a TF Serving error answer; the body itself when
// it has none.
std::string parse_rest_error(std::string_view body);

// Reads a model status answer (`GET /v1/models/NAME`).
model_status parse_rest_status(std::string_view body);

// The `:predict` request body for `fahrenheit` (row form, serving_default signature).
std::string rest_predict_body(std::span<const double> fahrenheit);

}  // namespace celsius
