#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace celsius {

// A model server's answer to one prediction.
struct model_prediction {
  std::vector<double> celsius;
  std::int64_t version = 0;  // the version that served the request
};

// Why a call failed; the HTTP layer maps these to 503 / 504 / 502.
enum class model_failure {
  unavailable,  // cannot reach the model server (connection refused, DNS, not serving)
  timeout,      // the deadline passed
  error,        // the model server answered with an error (message carries it)
  malformed,    // the answer does not have the expected shape
  rejected,     // not called: failing fast after repeated failures
};

struct model_error {
  model_failure kind;
  std::string message;
};

using predict_result = std::variant<model_prediction, model_error>;

// The configured model's state as the model server reports it.
struct model_status {
  bool available = false;
  std::int64_t version = 0;
  std::string detail;  // why it is not available
};

// A client for a model server that serves the Fahrenheit-to-Celsius signature
// (`fahrenheit` -> `celsius`, float64 vectors). Thread-safe; the callbacks run on the
// client's own threads and must not block. `fahrenheit` must stay valid until `done` runs;
// the client must outlive every callback.
class model_client {
 public:
  using clock = std::chrono::steady_clock;
  virtual ~model_client() = default;
  // One Predict call that ends by `deadline` (model_failure::timeout after it).
  virtual void predict(std::span<const double> fahrenheit, clock::time_point deadline,
                       std::function<void(predict_result)> done) = 0;
  virtual void status(std::function<void(model_status)> done) = 0;
};

}  // namespace celsius
