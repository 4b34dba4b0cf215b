#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "status.hpp"
#include "tensorflow_meta_graph.pb.h"

struct TF_Tensor;
struct TF_Graph;
struct TF_Session;
struct TF_Operation;

namespace celsius::serving {

class tf_library;

// A dense tensor owned by TensorFlow (a TF_Tensor): row-major, host byte order.
class runtime_tensor {
 public:
  runtime_tensor() = default;
  runtime_tensor(const tf_library& lib, TF_Tensor* tensor);
  ~runtime_tensor();
  runtime_tensor(runtime_tensor&& other) noexcept;
  runtime_tensor& operator=(runtime_tensor&& other) noexcept;
  runtime_tensor(const runtime_tensor&) = delete;
  runtime_tensor& operator=(const runtime_tensor&) = delete;

  explicit operator bool() const { return tensor_ != nullptr; }
  tensorflow::DataType dtype() const;
  const std::vector<std::int64_t>& dims() const { return dims_; }
  std::span<std::byte> bytes() const;
  TF_Tensor* get() const { return tensor_; }

 private:
  const tf_library* lib_ = nullptr;
  TF_Tensor* tensor_ = nullptr;
  std::vector<std::int64_t> dims_;
};

// One tensor of a signature: its alias, the graph tensor ("op:index") it names, its dtype.
struct tensor_binding {
  std::string alias;
  std::string tensor_name;
  tensorflow::DataType dtype = tensorflow::DT_INVALID;
  TF_Operation* operation = nullptr;  // null: the name is not in the graph (or not a dense tensor)
  int index = 0;
};

struct bound_signature {
  const tensorflow::SignatureDef* def = nullptr;
  std::map<std::string, tensor_binding> inputs;   // by alias
  std::map<std::string, tensor_binding> outputs;  // by alias
};

// One version of a SavedModel, loaded into a TensorFlow session
// (TF_LoadSessionFromSavedModel) with its SignatureDefs. Runs are thread-safe.
class saved_model {
 public:
  // Loads `export_dir` with `tags`; `session_config` is a serialized tensorflow.ConfigProto
  // (empty: TensorFlow's defaults). TensorFlow's status on failure.
  static status load(const tf_library& lib, const std::string& export_dir, const std::vector<std::string>& tags,
                     const std::string& session_config, std::unique_ptr<saved_model>& out);
  ~saved_model();
  saved_model(const saved_model&) = delete;
  saved_model& operator=(const saved_model&) = delete;

  const tensorflow::MetaGraphDef& meta_graph() const { return meta_graph_; }
  const bound_signature* signature(const std::string& key) const;

  // A tensor TensorFlow allocates (aligned for its kernels), to fill before a run.
  runtime_tensor allocate(tensorflow::DataType dtype, std::span<const std::int64_t> dims) const;

  // One TF_SessionRun: feeds[i] into inputs[i], fetches `outputs`. timeout_ms <= 0: none
  // (RunOptions.timeout_in_ms). TensorFlow's own status on failure (e.g. INVALID_ARGUMENT
  // "Expects arg[0] to be double but float is provided", DEADLINE_EXCEEDED).
  status run(std::span<const tensor_binding* const> inputs, std::span<const runtime_tensor> feeds,
             std::span<const tensor_binding* const> outputs, std::vector<runtime_tensor>& results,
             std::int64_t timeout_ms) const;

 private:
  explicit saved_model(const tf_library& lib) : lib_(lib) {}

  const tf_library& lib_;
  TF_Graph* graph_ = nullptr;
  TF_Session* session_ = nullptr;
  tensorflow::MetaGraphDef meta_graph_;
  std::map<std::string, bound_signature> signatures_;
};

}  // namespace celsius::serving
