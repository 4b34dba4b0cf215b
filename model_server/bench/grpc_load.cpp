// A closed-loop gRPC load generator for PredictionService/Predict: `concurrency` callers, each
// with one call in flight, for `seconds`; prints the completed calls and errors. The callback
// API keeps it cheap, so one core drives the server under test.
//   celsius-grpc-load --target 127.0.0.1:8500 [--concurrency 8] [--seconds 10] [--values 1] [--model f2c]
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <iostream>
#include <memory>
#include <mutex>

#include "tensorflow_serving.grpc.pb.h"

namespace {

using clock_type = std::chrono::steady_clock;

struct shared {
  tensorflow::serving::PredictionService::Stub* stub;
  const tensorflow::serving::PredictRequest* request;
  clock_type::time_point end;
  std::atomic<std::uint64_t> ok{0}, errors{0};
  std::mutex mutex;
  std::condition_variable done;
  int active = 0;
};

void call(shared& s) {
  struct in_flight {
    grpc::ClientContext context;
    tensorflow::serving::PredictResponse response;
  };
  auto* c = new in_flight;
  c->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  s.stub->async()->Predict(&c->context, s.request, &c->response, [&s, c](grpc::Status status) {
    (status.ok() ? s.ok : s.errors).fetch_add(1, std::memory_order_relaxed);
    delete c;
    if (clock_type::now() < s.end) {
      call(s);
      return;
    }
    std::lock_guard lock(s.mutex);
    if (--s.active == 0) s.done.notify_all();
  });
}

}  // namespace

int main(int argc, char** argv) {
  std::string target, model = "f2c";
  int concurrency = 8, values = 1;
  double seconds = 10;
  CLI::App app{"Closed-loop gRPC Predict load"};
  app.add_option("--target", target, "host:port of the model server")->required();
  app.add_option("--concurrency", concurrency, "Calls in flight");
  app.add_option("--seconds", seconds, "Duration");
  app.add_option("--values", values, "Values per request");
  app.add_option("--model", model, "Model name");
  CLI11_PARSE(app, argc, argv);

  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  auto stub = tensorflow::serving::PredictionService::NewStub(channel);
  tensorflow::serving::PredictRequest request;
  request.mutable_model_spec()->set_name(model);
  auto& input = (*request.mutable_inputs())["fahrenheit"];
  input.set_dtype(tensorflow::DT_DOUBLE);
  input.mutable_tensor_shape()->add_dim()->set_size(values);
  for (int i = 0; i < values; ++i) input.add_double_val(98.6 + i);

  shared s;
  s.stub = stub.get();
  s.request = &request;
  s.end = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
  s.active = concurrency;
  const auto started = clock_type::now();
  for (int i = 0; i < concurrency; ++i) call(s);
  {
    std::unique_lock lock(s.mutex);
    s.done.wait(lock, [&] { return s.active == 0; });
  }
  const double elapsed = std::chrono::duration<double>(clock_type::now() - started).count();
  std::cout << "requests=" << s.ok.load() << " errors=" << s.errors.load() << " seconds=" << elapsed << "\n";
  return s.errors.load() == 0 ? 0 : 1;
}
