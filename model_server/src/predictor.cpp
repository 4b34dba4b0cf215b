#include "predictor.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <iterator>
#include <set>

namespace celsius::serving {

namespace {

using tensorflow::serving::PredictRequest;
using tensorflow::serving::PredictResponse;

constexpr const char* default_signature = "serving_default";  // kDefaultServingSignatureDefKey

template <typename Map>
std::set<std::string> keys(const Map& map) {
  std::set<std::string> out;
  for (const auto& [k, v] : map) out.insert(k);
  return out;
}

std::set<std::string> difference(const std::set<std::string>& a, const std::set<std::string>& b) {
  std::set<std::string> out;
  for (const auto& x : a) {
    if (b.count(x) == 0) out.insert(x);
  }
  return out;
}

// A checked Predict call: predict_util.cc, PreProcessPrediction.
struct prepared {
  std::string signature_key;
  const bound_signature* signature = nullptr;
  run_target target;
  std::unique_ptr<run_task> task;
  std::string batch_key;  // empty unless batching
};

status prepare(const servable& s, const PredictRequest& request, PredictResponse& response, bool batching,
               bool as_content, prepared& out) {
  const std::string& requested = request.model_spec().signature_name();
  out.signature_key = requested.empty() ? default_signature : requested;
  out.signature = s.model->signature(out.signature_key);
  if (out.signature == nullptr) {
    return failed_precondition("Serving signature key \"" + out.signature_key + "\" not found.");
  }
  // MakeModelSpec.
  auto* spec = response.mutable_model_spec();
  spec->set_name(request.model_spec().name());
  spec->set_signature_name(out.signature_key);
  spec->mutable_version()->set_value(s.version);

  const tensorflow::SignatureDef& def = *out.signature->def;
  const std::string& method = def.method_name();
  if (method != "tensorflow/serving/predict" && method != "tensorflow/serving/classify" &&
      method != "tensorflow/serving/regress") {
    return internal_error(
        "Expected prediction signature method_name to be one of {tensorflow/serving/predict, "
        "tensorflow/serving/classify, tensorflow/serving/regress}. Was: " +
        method);
  }
  if (request.inputs().size() != def.inputs().size()) {
    const auto sent = keys(request.inputs());
    const auto expected = keys(def.inputs());
    return invalid_argument(fmt::format(
        "input size does not match signature: {}!={} len({{{}}}) != len({{{}}}). Sent extra: {{{}}}. Missing but "
        "required: {{{}}}.",
        request.inputs().size(), def.inputs().size(), fmt::join(sent, ","), fmt::join(expected, ","),
        fmt::join(difference(sent, expected), ","), fmt::join(difference(expected, sent), ",")));
  }
  for (const auto& [alias, proto] : request.inputs()) {
    if (def.inputs().count(alias) == 0) {
      return invalid_argument(
          fmt::format("input tensor alias not found in signature: {}. Inputs expected to be in "
                      "the set {{{}}}.",
                      alias, fmt::join(keys(def.inputs()), ",")));
    }
  }
  auto task = std::make_unique<run_task>();
  run_target& target = out.target;
  target.model = s.model.get();
  target.model_name = s.name;
  target.as_content = as_content;
  std::string key;  // the batch queue's key: built only when batching
  if (batching) {
    key.reserve(128);  // one allocation for the usual key (appending grew it two or three times)
    key += out.signature_key;
    key += '|';
  }
  // Inputs in alias order (bound_signature's maps are ordered).
  for (const auto& [alias, binding] : out.signature->inputs) {
    const tensorflow::TensorProto& proto = request.inputs().at(alias);
    if (proto.dtype() == tensorflow::DT_STRING || proto.dtype() == tensorflow::DT_RESOURCE ||
        proto.dtype() == tensorflow::DT_VARIANT) {
      return unimplemented(fmt::format("input '{}': {} tensors are not supported by celsius-model-server", alias,
                                       dtype_name(proto.dtype())));
    }
    tensor_shape shape;
    if (!proto_shape(proto, shape)) return invalid_argument("tensor parsing error: " + alias);
    if (batching) {
      // BatchingSession::ComputeInputSize.
      if (shape.dims.empty()) return invalid_argument("Batching Run() input tensors must have at least one dimension");
      if (task->inputs.empty()) {
        task->rows = shape.dims[0];
      } else if (task->rows != shape.dims[0]) {
        return invalid_argument("Batching Run() input tensors must have equal 0th-dimension size");
      }
      fmt::format_to(std::back_inserter(key), "{}:{}:", alias, static_cast<int>(proto.dtype()));
      for (std::size_t d = 1; d < shape.dims.size(); ++d) fmt::format_to(std::back_inserter(key), "{},", shape.dims[d]);
      key += ';';
    }
    target.inputs.push_back(&binding);
    task->inputs.push_back(&proto);
    task->shapes.push_back(std::move(shape));
  }
  // Outputs: the filter, or every output of the signature.
  std::set<std::string> seen;
  std::vector<const tensor_binding*> outputs;
  for (const std::string& alias : request.output_filter()) {
    const auto it = out.signature->outputs.find(alias);
    if (it == out.signature->outputs.end()) {
      return invalid_argument(
          fmt::format("output tensor alias not found in signature: {} Outputs expected to be in "
                      "the set {{{}}}.",
                      alias, fmt::join(keys(def.outputs()), ",")));
    }
    if (!seen.insert(alias).second) return invalid_argument("duplicate output tensor alias: " + alias);
    outputs.push_back(&it->second);
  }
  if (outputs.empty()) {
    for (const auto& [alias, binding] : out.signature->outputs) outputs.push_back(&binding);
  }
  std::sort(outputs.begin(), outputs.end(), [](auto* a, auto* b) { return a->alias < b->alias; });
  if (batching) {
    key += '|';
    for (const auto* o : outputs) {
      key += o->alias;
      key += ',';
    }
  }
  target.outputs = std::move(outputs);
  task->response = &response;
  out.task = std::move(task);
  out.batch_key = std::move(key);
  return {};
}

}  // namespace

predictor::predictor(model_manager& models, batch_scheduler* batching, serving_metrics& metrics, settings s)
    : models_(models), batching_(batching), metrics_(metrics), settings_(s) {
  if (settings_.reply_delay.count() > 0) {
    timers_ = std::make_unique<boost::asio::io_context>(1);
    timers_work_ = std::make_unique<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>(
        timers_->get_executor());
    timer_thread_ = std::thread([this] { timers_->run(); });
  }
}

predictor::~predictor() { stop(); }

void predictor::stop() {
  if (timers_work_) timers_work_->reset();  // pending delayed answers still run
  if (timer_thread_.joinable()) timer_thread_.join();
}

status predictor::predict_now(const PredictRequest& request, PredictResponse& response, predict_context context) {
  const auto started = clock_type::now();
  status result = run_unbatched(request, response, context);
  metrics_.request(request.model_spec().name(), code_name(result.error_code()), context.entrypoint,
                   std::chrono::duration<double, std::micro>(clock_type::now() - started).count());
  return result;
}

void predictor::predict(const PredictRequest& request, PredictResponse& response, predict_context context,
                        std::function<void(status)> done) {
  if (synchronous()) {
    done(predict_now(request, response, context));
    return;
  }
  const auto started = clock_type::now();
  // Every answer is counted (request_count by status, request_latency by entrypoint).
  auto finish = [this, started, entrypoint = context.entrypoint, name = request.model_spec().name(),
                 done = std::move(done)](status s) {
    metrics_.request(name, code_name(s.error_code()), entrypoint,
                     std::chrono::duration<double, std::micro>(clock_type::now() - started).count());
    done(std::move(s));
  };
  if (settings_.reply_delay.count() == 0) {
    run(request, response, context, std::move(finish));
    return;
  }
  after_reply_delay([this, &request, &response, context, finish = std::move(finish)]() mutable {
    run(request, response, context, std::move(finish));
  });
}

void predictor::after_reply_delay(std::function<void()> then) {
  if (settings_.reply_delay.count() == 0) {
    then();
    return;
  }
  auto timer = std::make_shared<boost::asio::steady_timer>(*timers_, settings_.reply_delay);
  timer->async_wait([timer, then = std::move(then)](auto) { then(); });
}

status predictor::run_unbatched(const PredictRequest& request, PredictResponse& response,
                                const predict_context& context) {
  servable_handle handle;
  if (status s = models_.handle(request.model_spec(), handle); !s.ok()) return s;
  prepared call;
  if (status s = prepare(*handle, request, response, false, settings_.as_content, call); !s.ok()) return s;
  std::int64_t timeout_ms = 0;
  if (context.deadline != clock_type::time_point::max()) {
    timeout_ms = std::max<std::int64_t>(
        1, std::chrono::ceil<std::chrono::milliseconds>(context.deadline - clock_type::now()).count());
  }
  run_task* task = call.task.get();
  return run_together(call.target, std::span<run_task* const>(&task, 1), task->rows, timeout_ms, metrics_);
}

void predictor::run(const PredictRequest& request, PredictResponse& response, predict_context context,
                    std::function<void(status)> done) {
  if (batching_ == nullptr) return done(run_unbatched(request, response, context));
  servable_handle handle;
  if (status s = models_.handle(request.model_spec(), handle); !s.ok()) return done(std::move(s));
  prepared call;
  if (status s = prepare(*handle, request, response, true, settings_.as_content, call); !s.ok()) {
    return done(std::move(s));
  }
  call.task->owner = handle;
  call.task->deadline = context.deadline;
  call.task->enqueued = clock_type::now();
  std::shared_ptr<batch_queue> queue;
  {
    std::lock_guard lock(handle->batch_mutex);
    auto& slot = handle->batch_queues[call.batch_key];
    if (!slot) slot = std::make_shared<batch_queue>(std::move(call.target));
    queue = slot;
  }
  call.task->done = std::move(done);
  if (status s = batching_->schedule(queue, call.task); !s.ok()) call.task->done(std::move(s));  // refused: still ours
}

status predictor::metadata(const tensorflow::serving::GetModelMetadataRequest& request,
                           tensorflow::serving::GetModelMetadataResponse& response) const {
  if (!request.has_model_spec()) return invalid_argument("Missing ModelSpec");
  if (request.metadata_field_size() == 0) {
    return invalid_argument("GetModelMetadataRequest must specify at least one metadata_field");
  }
  for (const auto& field : request.metadata_field()) {
    if (field != "signature_def") return invalid_argument("Metadata field " + field + " is not supported");
  }
  servable_handle handle;
  if (status s = models_.handle(request.model_spec(), handle); !s.ok()) return s;
  tensorflow::serving::SignatureDefMap map;
  for (const auto& [key, def] : handle->model->meta_graph().signature_def()) (*map.mutable_signature_def())[key] = def;
  response.mutable_model_spec()->set_name(handle->name);
  response.mutable_model_spec()->mutable_version()->set_value(handle->version);
  (*response.mutable_metadata())["signature_def"].PackFrom(map);
  return {};
}

status predictor::model_status(const tensorflow::serving::GetModelStatusRequest& request,
                               tensorflow::serving::GetModelStatusResponse& response) const {
  return models_.version_states(request, response);
}

status predictor::signature_inputs(const tensorflow::serving::ModelSpec& spec, const std::string& signature_name,
                                   servable_handle& keep, const input_map*& inputs) const {
  if (status s = models_.handle(spec, keep); !s.ok()) return s;
  const std::string key = signature_name.empty() ? default_signature : signature_name;
  const bound_signature* sig = keep->model->signature(key);
  if (sig == nullptr) return invalid_argument("Serving signature name: \"" + key + "\" not found in signature def");
  inputs = &sig->def->inputs();
  return {};
}

}  // namespace celsius::serving
