#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "batching.hpp"
#include "json_tensor.hpp"
#include "metrics.hpp"
#include "model_manager.hpp"
#include "status.hpp"
#include "tensorflow_serving.pb.h"

namespace celsius::serving {

struct predict_context {
  clock_type::time_point deadline = clock_type::time_point::max();  // max: none
  std::string_view entrypoint = "GRPC";                             // "GRPC" | "REST" (metrics)
};

// The API logic of PredictionService and ModelService, shared by the gRPC and REST front
// ends: TF Serving's TensorflowPredictor / predict_util.cc (RunPredict), get_model_metadata_impl.cc
// and get_model_status_impl.cc, with their checks and messages.
class predictor {
 public:
  struct settings {
    std::chrono::milliseconds reply_delay{0};  // --celsius_reply_delay_ms
    bool as_content = false;                   // --enable_serialization_as_tensor_content
  };
  // `batching` is null without --enable_batching.
  predictor(model_manager& models, batch_scheduler* batching, serving_metrics& metrics, settings s);
  ~predictor();
  predictor(const predictor&) = delete;
  predictor& operator=(const predictor&) = delete;

  // Fills `response` and calls `done` exactly once: before predict returns when synchronous()
  // (no batching, no reply delay), else from a batch or timer thread. `request` and
  // `response` must stay valid until then.
  void predict(const tensorflow::serving::PredictRequest& request, tensorflow::serving::PredictResponse& response,
               predict_context context, std::function<void(status)> done);
  bool synchronous() const { return batching_ == nullptr && settings_.reply_delay.count() == 0; }
  bool reply_delayed() const { return settings_.reply_delay.count() > 0; }  // --celsius_reply_delay_ms given
  // The synchronous case without a callback (the common path of both front ends).
  status predict_now(const tensorflow::serving::PredictRequest& request, tensorflow::serving::PredictResponse& response,
                     predict_context context);

  status metadata(const tensorflow::serving::GetModelMetadataRequest& request,
                  tensorflow::serving::GetModelMetadataResponse& response) const;
  status model_status(const tensorflow::serving::GetModelStatusRequest& request,
                      tensorflow::serving::GetModelStatusResponse& response) const;

  // The REST API's signature lookup (HttpRestApiHandler::GetInfoMap): the inputs of a
  // signature of the version `spec` names; `keep` holds that version meanwhile.
  status signature_inputs(const tensorflow::serving::ModelSpec& spec, const std::string& signature_name,
                          servable_handle& keep, const input_map*& inputs) const;

  // Calls `then` after --celsius_reply_delay_ms on the timer thread, or at once when there is
  // no delay: for answers decided before predict() (the REST front end's request parsing and
  // signature lookup), so that every Predict answer, errors too, comes that late.
  void after_reply_delay(std::function<void()> then);

  // Stops the reply-delay timers (answers still waiting are sent first).
  void stop();

 private:
  void run(const tensorflow::serving::PredictRequest& request, tensorflow::serving::PredictResponse& response,
           predict_context context, std::function<void(status)> done);
  status run_unbatched(const tensorflow::serving::PredictRequest& request,
                       tensorflow::serving::PredictResponse& response, const predict_context& context);

  model_manager& models_;
  batch_scheduler* batching_;
  serving_metrics& metrics_;
  const settings settings_;
  std::unique_ptr<boost::asio::io_context> timers_;
  std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> timers_work_;
  std::thread timer_thread_;
};

}  // namespace celsius::serving
