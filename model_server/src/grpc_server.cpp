#include "grpc_server.hpp"

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/support/message_allocator.h>
#include <spdlog/spdlog.h>

#include <google/protobuf/arena.h>

#include <charconv>
#include <limits>

#include "message_arena.hpp"
#include "tensorflow_serving.grpc.pb.h"

namespace celsius::serving {

namespace {

grpc::Status to_grpc(const status& s) {
  if (s.ok()) return grpc::Status::OK;
  return {static_cast<grpc::StatusCode>(s.error_code()), s.message()};
}

// Predict's request and response on one protobuf arena per call, whose first 4 KiB block comes
// with the holder (gRPC's MessageAllocator, grpcpp/support/message_allocator.h): a small Predict
// takes one allocation for its messages instead of one per string, map entry and repeated
// field, and frees them at once. The holder outlives the reactor's Finish (gRPC calls Release
// when the call is done).
class predict_allocator final
    : public grpc::MessageAllocator<tensorflow::serving::PredictRequest, tensorflow::serving::PredictResponse> {
 public:
  grpc::MessageHolder<tensorflow::serving::PredictRequest, tensorflow::serving::PredictResponse>* AllocateMessages()
      override {
    return new holder;
  }

 private:
  class holder final
      : public grpc::MessageHolder<tensorflow::serving::PredictRequest, tensorflow::serving::PredictResponse> {
   public:
    holder() {
      set_request(google::protobuf::Arena::CreateMessage<tensorflow::serving::PredictRequest>(&memory_.arena));
      set_response(google::protobuf::Arena::CreateMessage<tensorflow::serving::PredictResponse>(&memory_.arena));
    }
    void Release() override { delete this; }

   private:
    message_arena memory_;
  };
};

}  // namespace

bool parse_channel_arguments(const std::string& text, std::vector<channel_argument>& out, std::string& error) {
  out.clear();
  if (text.empty()) return true;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    const std::size_t eq = item.find('=');
    if (eq == std::string::npos) {
      error = "--grpc_channel_arguments: '" + item + "' is not key=value";
      return false;
    }
    channel_argument arg{item.substr(0, eq), item.substr(eq + 1)};
    const auto [end, ec] = std::from_chars(arg.value.data(), arg.value.data() + arg.value.size(), arg.int_value);
    arg.is_int = !arg.value.empty() && ec == std::errc() && end == arg.value.data() + arg.value.size();
    out.push_back(std::move(arg));
    start = comma + 1;
  }
  return true;
}

class grpc_front::prediction_service final : public tensorflow::serving::PredictionService::CallbackService {
 public:
  prediction_service(predictor& p, bool malformed) : predictor_(p), malformed_(malformed) {
    SetMessageAllocatorFor_Predict(&allocator_);
  }
  // The synchronous overloads stay the base's (unused); named here so they are not hidden.
  using tensorflow::serving::PredictionService::CallbackService::GetModelMetadata;
  using tensorflow::serving::PredictionService::CallbackService::Predict;

  grpc::ServerUnaryReactor* Predict(grpc::CallbackServerContext* context,
                                    const tensorflow::serving::PredictRequest* request,
                                    tensorflow::serving::PredictResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    predict_context call;
    call.entrypoint = "GRPC";
    const auto deadline = context->deadline();
    if (deadline != std::chrono::system_clock::time_point::max()) {
      call.deadline = clock_type::now() +
                      std::chrono::duration_cast<clock_type::duration>(deadline - std::chrono::system_clock::now());
    }
    const auto finish = [reactor, response, malformed = malformed_](const status& s) {
      if (malformed && s.ok()) {
        // Test aid: float32 labels on float64 values.
        for (auto& [name, tensor] : *response->mutable_outputs()) tensor.set_dtype(tensorflow::DT_FLOAT);
      }
      reactor->Finish(to_grpc(s));
    };
    if (predictor_.synchronous()) {
      finish(predictor_.predict_now(*request, *response, call));
    } else {
      predictor_.predict(*request, *response, call, finish);
    }
    return reactor;
  }

  grpc::ServerUnaryReactor* GetModelMetadata(grpc::CallbackServerContext* context,
                                             const tensorflow::serving::GetModelMetadataRequest* request,
                                             tensorflow::serving::GetModelMetadataResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(to_grpc(predictor_.metadata(*request, *response)));
    return reactor;
  }

 private:
  predictor& predictor_;
  const bool malformed_;
  predict_allocator allocator_;
};

class grpc_front::model_service final : public tensorflow::serving::ModelService::CallbackService {
 public:
  explicit model_service(predictor& p) : predictor_(p) {}
  using tensorflow::serving::ModelService::CallbackService::GetModelStatus;

  grpc::ServerUnaryReactor* GetModelStatus(grpc::CallbackServerContext* context,
                                           const tensorflow::serving::GetModelStatusRequest* request,
                                           tensorflow::serving::GetModelStatusResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(to_grpc(predictor_.model_status(*request, *response)));
    return reactor;
  }

 private:
  predictor& predictor_;
};

grpc_front::grpc_front(predictor& p, grpc_settings s)
    : predictor_(p),
      settings_(std::move(s)),
      prediction_(std::make_unique<prediction_service>(p, settings_.malformed_replies)),
      model_(std::make_unique<model_service>(p)) {}

grpc_front::~grpc_front() { shutdown(std::chrono::milliseconds(0)); }

int grpc_front::start(std::string& error) {
  grpc::EnableDefaultHealthCheckService(settings_.health_service);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(settings_.address, grpc::InsecureServerCredentials(), &port);
  if (!settings_.socket_path.empty()) {
    builder.AddListeningPort("unix:" + settings_.socket_path, grpc::InsecureServerCredentials());
  }
  builder.RegisterService(model_.get());
  builder.RegisterService(prediction_.get());
  builder.SetMaxMessageSize(std::numeric_limits<int>::max());
  if (settings_.max_threads > 0) {
    grpc::ResourceQuota quota("TensorFlowServingServerQuota");
    quota.SetMaxThreads(settings_.max_threads);
    builder.SetResourceQuota(quota);
  }
  for (const auto& arg : settings_.channel_arguments) {
    if (arg.is_int) {
      builder.AddChannelArgument(arg.key, arg.int_value);
    } else {
      builder.AddChannelArgument(arg.key, arg.value);
    }
  }
  server_ = builder.BuildAndStart();
  if (!server_ || port == 0) {
    error = "Failed to BuildAndStart gRPC server";
    server_.reset();
    return 0;
  }
  if (settings_.health_service) {
    if (auto* health = server_->GetHealthCheckService()) {
      // The whole server (""), and each service by its full and its short name.
      for (const char* name : {"", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService",
                               "PredictionService", "ModelService"}) {
        health->SetServingStatus(name, true);
      }
    }
  }
  return port;
}

void grpc_front::shutdown(std::chrono::milliseconds grace) {
  if (!server_) return;
  if (settings_.health_service) {
    if (auto* health = server_->GetHealthCheckService()) health->Shutdown();
  }
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
  server_.reset();
}

}  // namespace celsius::serving
