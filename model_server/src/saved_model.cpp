#include "saved_model.hpp"

#include <fmt/format.h>

#include <charconv>

#include "tensor_codec.hpp"
#include "tf_api.hpp"

namespace celsius::serving {

namespace {

status from_tf(const tf_api& api, const TF_Status* s) { return {static_cast<code>(api.GetCode(s)), api.Message(s)}; }

struct buffer_deleter {
  const tf_api* api;
  void operator()(TF_Buffer* b) const { api->DeleteBuffer(b); }
};
using buffer_ptr = std::unique_ptr<TF_Buffer, buffer_deleter>;

// "op:1" -> ("op", 1); "op" -> ("op", 0) (TensorFlow's ParseTensorName).
std::pair<std::string, int> parse_tensor_name(const std::string& name) {
  const auto colon = name.rfind(':');
  if (colon != std::string::npos) {
    int index = 0;
    const char* first = name.data() + colon + 1;
    const char* last = name.data() + name.size();
    const auto [end, ec] = std::from_chars(first, last, index);
    if (ec == std::errc() && end == last && first != last) return {name.substr(0, colon), index};
  }
  return {name, 0};
}

}  // namespace

runtime_tensor::runtime_tensor(const tf_library& lib, TF_Tensor* tensor) : lib_(&lib), tensor_(tensor) {
  if (tensor_ == nullptr) return;
  const int rank = lib.api().NumDims(tensor_);
  dims_.reserve(static_cast<std::size_t>(std::max(rank, 0)));
  for (int i = 0; i < rank; ++i) dims_.push_back(lib.api().Dim(tensor_, i));
}

runtime_tensor::~runtime_tensor() {
  if (tensor_ != nullptr) lib_->api().DeleteTensor(tensor_);
}

runtime_tensor::runtime_tensor(runtime_tensor&& other) noexcept
    : lib_(other.lib_), tensor_(std::exchange(other.tensor_, nullptr)), dims_(std::move(other.dims_)) {}

runtime_tensor& runtime_tensor::operator=(runtime_tensor&& other) noexcept {
  if (this != &other) {
    if (tensor_ != nullptr) lib_->api().DeleteTensor(tensor_);
    lib_ = other.lib_;
    tensor_ = std::exchange(other.tensor_, nullptr);
    dims_ = std::move(other.dims_);
  }
  return *this;
}

tensorflow::DataType runtime_tensor::dtype() const {
  return static_cast<tensorflow::DataType>(lib_->api().TensorType(tensor_));
}

std::span<std::byte> runtime_tensor::bytes() const {
  if (tensor_ == nullptr) return {};
  return {static_cast<std::byte*>(lib_->api().TensorData(tensor_)), lib_->api().TensorByteSize(tensor_)};
}

status saved_model::load(const tf_library& lib, const std::string& export_dir, const std::vector<std::string>& tags,
                         const std::string& session_config, std::unique_ptr<saved_model>& out) {
  const tf_api& api = lib.api();
  auto model = std::unique_ptr<saved_model>(new saved_model(lib));
  auto st = make_status(api);
  TF_SessionOptions* options = api.NewSessionOptions();
  if (!session_config.empty()) {
    api.SetConfig(options, session_config.data(), session_config.size(), st.get());
    if (api.GetCode(st.get()) != TF_OK) {
      api.DeleteSessionOptions(options);
      return from_tf(api, st.get());
    }
  }
  std::vector<const char*> tag_ptrs;
  tag_ptrs.reserve(tags.size());
  for (const auto& t : tags) tag_ptrs.push_back(t.c_str());
  model->graph_ = api.NewGraph();
  buffer_ptr meta(api.NewBuffer(), {&api});
  model->session_ =
      api.LoadSessionFromSavedModel(options, nullptr, export_dir.c_str(), tag_ptrs.data(),
                                    static_cast<int>(tag_ptrs.size()), model->graph_, meta.get(), st.get());
  api.DeleteSessionOptions(options);
  if (api.GetCode(st.get()) != TF_OK || model->session_ == nullptr) return from_tf(api, st.get());

  // The MetaGraphDef as TensorFlow read it: only its SignatureDefs are parsed here.
  if (!model->meta_graph_.ParseFromArray(meta->data, static_cast<int>(meta->length))) {
    return internal_error("cannot parse the MetaGraphDef of " + export_dir);
  }
  const auto bind = [&](const std::string& alias, const tensorflow::TensorInfo& info) {
    tensor_binding b{alias, info.name(), info.dtype(), nullptr, 0};
    if (info.encoding_case() == tensorflow::TensorInfo::kName) {
      const auto [op, index] = parse_tensor_name(info.name());
      TF_Operation* operation = api.GraphOperationByName(model->graph_, op.c_str());
      if (operation != nullptr && index >= 0 && index < api.OperationNumOutputs(operation)) {
        b.operation = operation;
        b.index = index;
      }
    }
    return b;
  };
  for (const auto& [key, def] : model->meta_graph_.signature_def()) {
    bound_signature& sig = model->signatures_[key];
    sig.def = &def;
    for (const auto& [alias, info] : def.inputs()) sig.inputs.emplace(alias, bind(alias, info));
    for (const auto& [alias, info] : def.outputs()) sig.outputs.emplace(alias, bind(alias, info));
  }
  out = std::move(model);
  return {};
}

saved_model::~saved_model() {
  const tf_api& api = lib_.api();
  auto st = make_status(api);
  if (session_ != nullptr) {
    api.CloseSession(session_, st.get());
    api.DeleteSession(session_, st.get());
  }
  if (graph_ != nullptr) api.DeleteGraph(graph_);
}

const bound_signature* saved_model::signature(const std::string& key) const {
  const auto it = signatures_.find(key);
  return it == signatures_.end() ? nullptr : &it->second;
}

runtime_tensor saved_model::allocate(tensorflow::DataType dtype, std::span<const std::int64_t> dims) const {
  std::size_t elements = 1;
  for (const std::int64_t d : dims) elements *= static_cast<std::size_t>(d);
  const tf_api& api = lib_.api();
  TF_Tensor* t = api.AllocateTensor(static_cast<TF_DataType>(dtype), dims.data(), static_cast<int>(dims.size()),
                                    elements * dtype_size(dtype));
  return {lib_, t};
}

status saved_model::run(std::span<const tensor_binding* const> inputs, std::span<const runtime_tensor> feeds,
                        std::span<const tensor_binding* const> outputs, std::vector<runtime_tensor>& results,
                        std::int64_t timeout_ms) const {
  const tf_api& api = lib_.api();
  std::vector<TF_Output> in(inputs.size()), out(outputs.size());
  std::vector<TF_Tensor*> in_values(inputs.size()), out_values(outputs.size(), nullptr);
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i]->operation == nullptr) {
      return invalid_argument(
          fmt::format("Tensor {}, specified in either feed_devices or fetch_devices was not in "
                      "the Graph",
                      inputs[i]->tensor_name));
    }
    in[i] = {inputs[i]->operation, inputs[i]->index};
    in_values[i] = feeds[i].get();
  }
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    if (outputs[i]->operation == nullptr) {
      return invalid_argument(
          fmt::format("Tensor {}, specified in either feed_devices or fetch_devices was not in "
                      "the Graph",
                      outputs[i]->tensor_name));
    }
    out[i] = {outputs[i]->operation, outputs[i]->index};
  }
  buffer_ptr run_options(nullptr, {&api});
  if (timeout_ms > 0) {
    tensorflow::RunOptions options;
    options.set_timeout_in_ms(timeout_ms);
    const std::string bytes = options.SerializeAsString();
    run_options.reset(api.NewBufferFromString(bytes.data(), bytes.size()));
  }
  auto st = make_status(api);
  api.SessionRun(session_, run_options.get(), in.data(), in_values.data(), static_cast<int>(in.size()), out.data(),
                 out_values.data(), static_cast<int>(out.size()), nullptr, 0, nullptr, st.get());
  results.clear();
  results.reserve(outputs.size());
  for (TF_Tensor* t : out_values) results.emplace_back(lib_, t);  // owned even on failure
  if (api.GetCode(st.get()) != TF_OK) return from_tf(api, st.get());
  return {};
}

}  // namespace celsius::serving
