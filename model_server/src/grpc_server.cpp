#include "grpc_server.hpp"

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <spdlog/spdlog.h>

#include <google/protobuf/arena.h>

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <limits>
#include <thread>

#include "message_arena.hpp"
#include "tensorflow_serving.grpc.pb.h"

namespace celsius::serving {

namespace {

grpc::Status to_grpc(const status& s) {
  if (s.ok()) return grpc::Status::OK;
  return {static_cast<grpc::StatusCode>(s.error_code()), s.message()};
}

// The CPUs this process may run on (its affinity mask: `taskset`, a cpuset), at least 1.
unsigned usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1U, std::thread::hardware_concurrency());
}

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

// One call of the async API, from the request gRPC matches to it to the end of its Finish.
// The tag of both operations is the call itself: `proceed(ok)` runs on the thread that takes
// the tag from the completion queue.
class grpc_front::call {
 public:
  virtual ~call() = default;
  virtual void proceed(bool ok) = 0;
};

namespace {

// A unary method of an async service. `Traits` names the messages and says how to ask for
// the next call (`request`) and how to answer one (`handle`, which calls `finish` exactly
// once, on this thread or later on another); the call re-arms its method as soon as gRPC
// hands it a call, so one request per method and queue is always outstanding.
template <class Traits>
class unary_call final : public grpc_front::call {
 public:
  using request_type = typename Traits::request_type;
  using response_type = typename Traits::response_type;

  unary_call(Traits traits, grpc::ServerCompletionQueue* cq, std::atomic<int>& handling)
      : traits_(std::move(traits)), cq_(cq), handling_(handling) {
    request_ = google::protobuf::Arena::CreateMessage<request_type>(&memory_.arena);
    response_ = google::protobuf::Arena::CreateMessage<response_type>(&memory_.arena);
    traits_.request(&context_, request_, &responder_, cq_, this);
  }

  void proceed(bool ok) override {
    if (!answered_ && ok) {
      new unary_call(traits_, cq_, handling_);  // the next call of this method on this queue
      answered_ = true;
      handling_.fetch_add(1, std::memory_order_relaxed);
      // After Finish this call may be deleted at once by its queue's thread: count down
      // through a reference taken before.
      traits_.handle(context_, *request_, *response_, [this, &handling = handling_](const grpc::Status& s) {
        responder_.Finish(*response_, s, this);
        handling.fetch_sub(1, std::memory_order_release);
      });
      return;
    }
    // Finish done (ok or not: the client may have gone), or the request was not matched
    // because the server is shutting down.
    delete this;
  }

 private:
  // First: request_ and response_ live on it. Its first 4 KiB block comes with the call
  // (message_arena.hpp), so a small Predict takes one allocation for its messages instead of
  // one per string, map entry and repeated field, and frees them at once.
  message_arena memory_;
  Traits traits_;
  grpc::ServerCompletionQueue* cq_;
  std::atomic<int>& handling_;
  grpc::ServerContext context_;
  request_type* request_ = nullptr;
  response_type* response_ = nullptr;
  grpc::ServerAsyncResponseWriter<response_type> responder_{&context_};
  bool answered_ = false;
};

struct predict_traits {
  using request_type = tensorflow::serving::PredictRequest;
  using response_type = tensorflow::serving::PredictResponse;
  tensorflow::serving::PredictionService::AsyncService* service;
  predictor* predictor_;
  bool malformed;

  void request(grpc::ServerContext* c, request_type* r, grpc::ServerAsyncResponseWriter<response_type>* w,
               grpc::ServerCompletionQueue* cq, void* tag) const {
    service->RequestPredict(c, r, w, cq, cq, tag);
  }
  template <class Finish>
  void handle(grpc::ServerContext& context, const request_type& request, response_type& response, Finish finish) const {
    predict_context call;
    call.entrypoint = "GRPC";
    const auto deadline = context.deadline();
    if (deadline != std::chrono::system_clock::time_point::max()) {
      call.deadline = clock_type::now() +
                      std::chrono::duration_cast<clock_type::duration>(deadline - std::chrono::system_clock::now());
    }
    auto done = [&response, finish, malformed = malformed](const status& s) {
      if (malformed && s.ok()) {
        // Test aid: float32 labels on float64 values.
        for (auto& [name, tensor] : *response.mutable_outputs()) tensor.set_dtype(tensorflow::DT_FLOAT);
      }
      finish(to_grpc(s));
    };
    if (predictor_->synchronous()) {
      done(predictor_->predict_now(request, response, call));
    } else {
      predictor_->predict(request, response, call, done);
    }
  }
};

struct metadata_traits {
  using request_type = tensorflow::serving::GetModelMetadataRequest;
  using response_type = tensorflow::serving::GetModelMetadataResponse;
  tensorflow::serving::PredictionService::AsyncService* service;
  predictor* predictor_;

  void request(grpc::ServerContext* c, request_type* r, grpc::ServerAsyncResponseWriter<response_type>* w,
               grpc::ServerCompletionQueue* cq, void* tag) const {
    service->RequestGetModelMetadata(c, r, w, cq, cq, tag);
  }
  template <class Finish>
  void handle(grpc::ServerContext&, const request_type& request, response_type& response, Finish finish) const {
    finish(to_grpc(predictor_->metadata(request, response)));
  }
};

struct status_traits {
  using request_type = tensorflow::serving::GetModelStatusRequest;
  using response_type = tensorflow::serving::GetModelStatusResponse;
  tensorflow::serving::ModelService::AsyncService* service;
  predictor* predictor_;

  void request(grpc::ServerContext* c, request_type* r, grpc::ServerAsyncResponseWriter<response_type>* w,
               grpc::ServerCompletionQueue* cq, void* tag) const {
    service->RequestGetModelStatus(c, r, w, cq, cq, tag);
  }
  template <class Finish>
  void handle(grpc::ServerContext&, const request_type& request, response_type& response, Finish finish) const {
    finish(to_grpc(predictor_->model_status(request, response)));
  }
};

}  // namespace

grpc_front::grpc_front(predictor& p, grpc_settings s) : predictor_(p), settings_(std::move(s)) {}

grpc_front::~grpc_front() {
  shutdown(std::chrono::milliseconds(0));
  // Every handler has answered (main stops the predictor first), so no Finish can come after
  // the queues are shut down; each thread then takes the calls left on its queue and ends.
  while (handling_.load(std::memory_order_acquire) != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  for (auto& cq : queues_) cq->Shutdown();
  for (auto& t : threads_) t.join();
  server_.reset();
}

int grpc_front::start(std::string& error) {
  grpc::EnableDefaultHealthCheckService(settings_.health_service);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(settings_.address, grpc::InsecureServerCredentials(), &port);
  if (!settings_.socket_path.empty()) {
    builder.AddListeningPort("unix:" + settings_.socket_path, grpc::InsecureServerCredentials());
  }
  builder.RegisterService(&model_);
  builder.RegisterService(&prediction_);
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
  for (unsigned i = 0, n = usable_cpus(); i < n; ++i) queues_.push_back(builder.AddCompletionQueue());
  server_ = builder.BuildAndStart();
  if (!server_ || port == 0) {
    error = "Failed to BuildAndStart gRPC server";
    server_.reset();
    for (auto& cq : queues_) cq->Shutdown();
    for (auto& cq : queues_) {
      void* tag = nullptr;
      bool ok = false;
      while (cq->Next(&tag, &ok)) {
      }
    }
    queues_.clear();
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
  for (auto& queue : queues_) {
    grpc::ServerCompletionQueue* cq = queue.get();
    // Each queue has one outstanding request per method (re-armed as each call arrives).
    new unary_call<predict_traits>(predict_traits{&prediction_, &predictor_, settings_.malformed_replies}, cq,
                                   handling_);
    new unary_call<metadata_traits>(metadata_traits{&prediction_, &predictor_}, cq, handling_);
    new unary_call<status_traits>(status_traits{&model_, &predictor_}, cq, handling_);
    threads_.emplace_back([cq] {
      void* tag = nullptr;
      bool ok = false;
      while (cq->Next(&tag, &ok)) static_cast<call*>(tag)->proceed(ok);
    });
  }
  return port;
}

void grpc_front::shutdown(std::chrono::milliseconds grace) {
  if (!server_ || shut_down_) return;
  shut_down_ = true;
  if (settings_.health_service) {
    if (auto* health = server_->GetHealthCheckService()) health->Shutdown();
  }
  // Returns once every call has finished, or at the deadline with the rest cancelled; the
  // queues' threads keep running meanwhile (their Finish operations complete on them).
  server_->Shutdown(std::chrono::system_clock::now() + grace);
}

}  // namespace celsius::serving
