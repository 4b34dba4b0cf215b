#include "grpc_model_client.hpp"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <bit>
#include <cstring>

#include "tensorflow_serving.grpc.pb.h"

namespace celsius {

namespace {

namespace tfs = tensorflow::serving;

constexpr const char* input_name = "fahrenheit";
constexpr const char* output_name = "celsius";

// tensor_content holds the values in host order, which for every platform TF Serving
// runs on is little-endian; reading it with memcpy is exact only here.
static_assert(std::endian::native == std::endian::little, "tensor_content is read as little-endian doubles");

std::shared_ptr<grpc::Channel> make_channel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 5 * 60 * 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20 * 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  // Reconnect backoff 100 ms, growing to at most 1 s. (Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS:
  // gRPC uses it as the minimum time a connection attempt is given, default 20 s; set to
  // 100 ms it failed every attempt that took longer, e.g. on a busy machine, with
  // "connection attempt timed out before receiving SETTINGS frame".)
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // Client-side load balancing over every address the name resolves to; re-resolution
  // (asked for by gRPC whenever a connection drops) at most once a second, not the
  // default 30 s, so a replaced model-server pod is found quickly.
  args.SetLoadBalancingPolicyName("round_robin");
  args.SetInt(GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS, 1000);
  args.SetInt(GRPC_ARG_SERVICE_CONFIG_DISABLE_RESOLUTION, 1);  // no service config from DNS TXT records
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

model_error to_error(const grpc::Status& status) {
  const std::string message = "model server: " + status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return {model_failure::unavailable, message};
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return {model_failure::timeout, "model server did not answer in time"};
    default:
      return {model_failure::error, message};
  }
}

model_error malformed(std::string message) { return {model_failure::malformed, std::move(message)}; }

std::string shape_text(const tensorflow::TensorShapeProto& shape) {
  if (shape.unknown_rank()) return "unknown rank";
  std::string text = "[";
  for (int i = 0; i < shape.dim_size(); ++i) {
    if (i != 0) text += ',';
    text += std::to_string(shape.dim(i).size());
  }
  return text + "]";
}

}  // namespace

predict_result read_predict_response(const tfs::PredictResponse& response, std::size_t expected,
                                     std::string_view model_name, std::optional<std::int64_t> version) {
  const auto it = response.outputs().find(output_name);
  if (it == response.outputs().end()) return malformed("no 'celsius' output");
  const tensorflow::TensorProto& tensor = it->second;
  if (tensor.dtype() != tensorflow::DT_DOUBLE) {
    return malformed(fmt::format("'celsius' has dtype {} ({}), not DT_DOUBLE",
                                 tensorflow::DataType_Name(tensor.dtype()), static_cast<int>(tensor.dtype())));
  }
  const auto& shape = tensor.tensor_shape();
  if (shape.unknown_rank() || shape.dim_size() != 1 || shape.dim(0).size() < 0 ||
      static_cast<std::uint64_t>(shape.dim(0).size()) != expected) {
    return malformed(
        fmt::format("'celsius' has shape {} for {} inputs (expected [{}])", shape_text(shape), expected, expected));
  }
  model_prediction out;
  const std::string& content = tensor.tensor_content();
  const auto& values = tensor.double_val();
  if (!content.empty()) {
    if (!values.empty()) return malformed("'celsius' has both tensor_content and double_val");
    if (content.size() != expected * sizeof(double)) {
      return malformed(fmt::format("'celsius' tensor_content has {} bytes for shape [{}] (expected {})", content.size(),
                                   expected, expected * sizeof(double)));
    }
    out.celsius.resize(expected);
    std::memcpy(out.celsius.data(), content.data(), content.size());
  } else if (static_cast<std::size_t>(values.size()) == expected) {
    out.celsius.assign(values.begin(), values.end());
  } else if (values.size() == 1) {
    out.celsius.assign(expected, values[0]);  // one value for the whole shape (TensorFlow's broadcast)
  } else {
    return malformed(fmt::format("'celsius' has {} values for shape [{}]", values.size(), expected));
  }
  if (response.has_model_spec()) {
    const tfs::ModelSpec& spec = response.model_spec();
    if (!spec.name().empty() && spec.name() != model_name) {
      return malformed(fmt::format("the answer is from model '{}', not '{}'", spec.name(), model_name));
    }
    if (spec.has_version()) {
      out.version = spec.version().value();
      if (version && out.version != *version) {
        return malformed(fmt::format("the answer is from version {}, not the requested {}", out.version, *version));
      }
    }
  }
  return out;
}

namespace {

class grpc_model_client final : public model_client {
 public:
  explicit grpc_model_client(const grpc_model_options& options)
      : options_(options),
        channel_(make_channel(options.target)),
        prediction_(tfs::PredictionService::NewStub(channel_)),
        models_(tfs::ModelService::NewStub(channel_)) {}

  void predict(std::span<const double> fahrenheit, std::function<void(predict_result)> done) override {
    struct call {
      grpc::ClientContext context;
      tfs::PredictRequest request;
      tfs::PredictResponse response;
      std::size_t count;
      std::function<void(predict_result)> done;
    };
    auto c = std::make_shared<call>();
    c->count = fahrenheit.size();
    c->done = std::move(done);
    c->context.set_deadline(std::chrono::system_clock::now() + options_.timeout);
    fill_spec(*c->request.mutable_model_spec());
    c->request.mutable_model_spec()->set_signature_name("serving_default");
    tensorflow::TensorProto& input = (*c->request.mutable_inputs())[input_name];
    input.set_dtype(tensorflow::DT_DOUBLE);
    input.mutable_tensor_shape()->add_dim()->set_size(static_cast<std::int64_t>(fahrenheit.size()));
    input.mutable_double_val()->Add(fahrenheit.begin(), fahrenheit.end());
    prediction_->async()->Predict(&c->context, &c->request, &c->response, [this, c](const grpc::Status& status) {
      if (!status.ok()) return c->done(to_error(status));
      c->done(read_predict_response(c->response, c->count, options_.model_name, options_.model_version));
    });
  }

  void status(std::function<void(model_status)> done) override {
    struct call {
      grpc::ClientContext context;
      tfs::GetModelStatusRequest request;
      tfs::GetModelStatusResponse response;
      std::function<void(model_status)> done;
    };
    auto c = std::make_shared<call>();
    c->done = std::move(done);
    c->context.set_deadline(std::chrono::system_clock::now() + options_.timeout);
    fill_spec(*c->request.mutable_model_spec());
    models_->async()->GetModelStatus(&c->context, &c->request, &c->response, [c](const grpc::Status& s) {
      model_status out;
      if (!s.ok()) {
        out.detail = to_error(s).message;
      } else {
        out.detail = "no version of the model is AVAILABLE";
        for (const auto& v : c->response.model_version_status()) {
          if (v.state() == tfs::ModelVersionStatus::AVAILABLE && v.version() >= out.version) {
            out.available = true;
            out.version = v.version();
            out.detail.clear();
          }
        }
      }
      c->done(std::move(out));
    });
  }

 private:
  void fill_spec(tfs::ModelSpec& spec) const {
    spec.set_name(options_.model_name);
    if (options_.model_version) spec.mutable_version()->set_value(*options_.model_version);
  }

  grpc_model_options options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<tfs::PredictionService::Stub> prediction_;
  std::unique_ptr<tfs::ModelService::Stub> models_;
};

}  // namespace

std::unique_ptr<model_client> make_grpc_model_client(const grpc_model_options& options) {
  return std::make_unique<grpc_model_client>(options);
}

}  // namespace celsius
