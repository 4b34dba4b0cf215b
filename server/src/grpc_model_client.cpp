#include "grpc_model_client.hpp"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <bit>
#include <cstring>
#include <thread>

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
  // The channel's own subchannels (connections), not gRPC's process-wide pool, where channels
  // with the same address and arguments share them (GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
  // grpc/impl/codegen/grpc_types.h in gRPC 1.51, Debian 12's): a new client never starts with another client's
  // failed connection still waiting out its reconnect backoff (tested by
  // grpc_client_faults.a_new_client_does_not_inherit_another_clients_failed_connection).
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // The retry filter (GRPC_ARG_ENABLE_RETRIES) stays on, its default: no retry policy is
  // configured, but it also makes gRPC's transparent retries, which resend a call a
  // connection refused before the server saw it, e.g. one started as the model server's
  // GOAWAY arrived at the end of its max_connection_age (gRFC A6; "When enabled, transparent
  // retries will be performed as appropriate", grpc/impl/codegen/grpc_types.h in gRPC 1.51).
  // Turned off, such calls failed
  // with UNAVAILABLE "GOAWAY received" (grpc_client_connection_age.* tests it).
  // channelz's per-call counters are off: no channelz service runs in this process.
  args.SetInt(GRPC_ARG_ENABLE_CHANNELZ, 0);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

model_error to_error(const grpc::Status& status) {
  const std::string message = "model server: " + status.error_message();
  switch (status.error_code()) {
    // This client cancels none of its calls (its deadlines come back as DEADLINE_EXCEEDED),
    // so CANCELLED is the server's doing: a model server shutting down cancels the calls it
    // has not answered when its grace period ends (grpc::Server::Shutdown(deadline)). Seen on
    // the cluster when a model-server pod was deleted under load: an outage (503), not an
    // error of the model (502).
    case grpc::StatusCode::CANCELLED:
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

// The async completion-queue API with one thread of our own that takes every completion
// (cq_.Next), rather than the callback API: measured on this project's 2-core VMs
// (server/README.md, "The model path"), the callback API's two "nexting" threads and the
// event loop contended on gRPC's internal locks, and one thread costs less CPU per call.
// Calls start on the caller's thread (an event loop or the coalescer); their completion
// runs on this client's thread, which calls `done`.
class grpc_model_client final : public model_client {
 public:
  explicit grpc_model_client(const grpc_model_options& options)
      : options_(options),
        channel_(make_channel(options.target)),
        prediction_(tfs::PredictionService::NewStub(channel_)),
        models_(tfs::ModelService::NewStub(channel_)),
        thread_([this] { run(); }) {}

  // Every call has completed by now (the gateway waits for them): drain and stop.
  ~grpc_model_client() override {
    cq_.Shutdown();
    thread_.join();
  }
  grpc_model_client(const grpc_model_client&) = delete;
  grpc_model_client& operator=(const grpc_model_client&) = delete;

  void predict(std::span<const double> fahrenheit, clock::time_point deadline,
               std::function<void(predict_result)> done) override {
    auto* c = new predict_call(*this, fahrenheit.size(), std::move(done));
    c->context.set_deadline(std::chrono::system_clock::now() + (deadline - clock::now()));
    fill_spec(*c->request.mutable_model_spec());
    c->request.mutable_model_spec()->set_signature_name("serving_default");
    tensorflow::TensorProto& input = (*c->request.mutable_inputs())[input_name];
    input.set_dtype(tensorflow::DT_DOUBLE);
    input.mutable_tensor_shape()->add_dim()->set_size(static_cast<std::int64_t>(fahrenheit.size()));
    input.mutable_double_val()->Add(fahrenheit.begin(), fahrenheit.end());
    c->reader = prediction_->AsyncPredict(&c->context, c->request, &cq_);
    c->reader->Finish(&c->response, &c->status, c);
  }

  void status(std::function<void(model_status)> done) override {
    auto* c = new status_call(std::move(done));
    c->context.set_deadline(std::chrono::system_clock::now() + options_.timeout);
    fill_spec(*c->request.mutable_model_spec());
    c->reader = models_->AsyncGetModelStatus(&c->context, c->request, &cq_);
    c->reader->Finish(&c->response, &c->status, c);
  }

 private:
  // A call in flight; its completion is the tag that comes out of the queue.
  struct call_base {
    virtual ~call_base() = default;
    virtual void complete() = 0;
    grpc::ClientContext context;
    grpc::Status status;
  };

  struct predict_call final : call_base {
    predict_call(const grpc_model_client& c, std::size_t n, std::function<void(predict_result)> d)
        : client(c), count(n), done(std::move(d)) {}
    void complete() override {
      if (!status.ok()) return done(to_error(status));
      done(read_predict_response(response, count, client.options_.model_name, client.options_.model_version));
    }
    const grpc_model_client& client;
    std::size_t count;
    std::function<void(predict_result)> done;
    tfs::PredictRequest request;
    tfs::PredictResponse response;
    std::unique_ptr<grpc::ClientAsyncResponseReader<tfs::PredictResponse>> reader;
  };

  struct status_call final : call_base {
    explicit status_call(std::function<void(model_status)> d) : done(std::move(d)) {}
    void complete() override {
      model_status out;
      if (!status.ok()) {
        out.detail = to_error(status).message;
      } else {
        out.detail = "no version of the model is AVAILABLE";
        for (const auto& v : response.model_version_status()) {
          if (v.state() == tfs::ModelVersionStatus::AVAILABLE && v.version() >= out.version) {
            out.available = true;
            out.version = v.version();
            out.detail.clear();
          }
        }
      }
      done(std::move(out));
    }
    std::function<void(model_status)> done;
    tfs::GetModelStatusRequest request;
    tfs::GetModelStatusResponse response;
    std::unique_ptr<grpc::ClientAsyncResponseReader<tfs::GetModelStatusResponse>> reader;
  };

  void run() {
    void* tag = nullptr;
    bool ok = false;
    while (cq_.Next(&tag, &ok)) {
      // A unary call's Finish always completes with ok; the status says how it went.
      const std::unique_ptr<call_base> c(static_cast<call_base*>(tag));
      c->complete();
    }
  }

  void fill_spec(tfs::ModelSpec& spec) const {
    spec.set_name(options_.model_name);
    if (options_.model_version) spec.mutable_version()->set_value(*options_.model_version);
  }

  grpc_model_options options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<tfs::PredictionService::Stub> prediction_;
  std::unique_ptr<tfs::ModelService::Stub> models_;
  grpc::CompletionQueue cq_;
  std::thread thread_;  // last: starts once everything it uses exists
};

}  // namespace

std::unique_ptr<model_client> make_grpc_model_client(const grpc_model_options& options) {
  return std::make_unique<grpc_model_client>(options);
}

}  // namespace celsius
