#include "grpc_model_client.hpp"

#include <grpcpp/grpcpp.h>

#include <cstring>

#include "tensorflow_serving.grpc.pb.h"

namespace celsius {

namespace {

namespace tfs = tensorflow::serving;

constexpr const char* input_name = "fahrenheit";
constexpr const char* output_name = "celsius";

std::shared_ptr<grpc::Channel> make_channel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 5 * 60 * 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20 * 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
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

// Reads the celsius output: double_val (what TF Serving sends) or tensor_content.
predict_result read_prediction(const tfs::PredictResponse& response, std::size_t expected) {
  const auto it = response.outputs().find(output_name);
  if (it == response.outputs().end()) {
    return model_error{model_failure::malformed, "model server answer has no 'celsius' output"};
  }
  const tensorflow::TensorProto& tensor = it->second;
  if (tensor.dtype() != tensorflow::DT_DOUBLE) {
    return model_error{model_failure::malformed, "model server answer: 'celsius' is not float64"};
  }
  model_prediction out;
  if (tensor.double_val_size() > 0) {
    out.celsius.assign(tensor.double_val().begin(), tensor.double_val().end());
  } else if (!tensor.tensor_content().empty() && tensor.tensor_content().size() % sizeof(double) == 0) {
    out.celsius.resize(tensor.tensor_content().size() / sizeof(double));
    std::memcpy(out.celsius.data(), tensor.tensor_content().data(), tensor.tensor_content().size());
  }
  if (out.celsius.size() == 1 && expected > 1) out.celsius.assign(expected, out.celsius.front());  // broadcast
  if (out.celsius.size() != expected) {
    return model_error{model_failure::malformed, "model server answer has " + std::to_string(out.celsius.size()) +
                                                     " values for " + std::to_string(expected) + " inputs"};
  }
  out.version = response.model_spec().has_version() ? response.model_spec().version().value() : 0;
  return out;
}

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
    prediction_->async()->Predict(&c->context, &c->request, &c->response, [c](const grpc::Status& status) {
      if (!status.ok()) return c->done(to_error(status));
      c->done(read_prediction(c->response, c->count));
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
