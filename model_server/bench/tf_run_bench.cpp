// The bare cost of running the model: TF_SessionRun on the loaded SavedModel, no server.
// Reports wall time and process CPU time (all of TensorFlow's threads) per run, for each
// batch size. model-server-bench.sh runs it next to the server, pinned the same way.
//   celsius-tf-run-bench --model_dir BASE/1 [--seconds 3] [--batch_sizes 1,64] [--signature serving_default]
//                        [--intra_op_parallelism 0] [--inter_op_parallelism 0]
// The two parallelism options are tensorflow.ConfigProto's fields (0: TensorFlow's defaults;
// a negative inter_op runs each TF_SessionRun in the calling thread).
#include <time.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstring>
#include <iostream>
#include <random>

#include "saved_model.hpp"
#include "tensor_codec.hpp"
#include "tensorflow_meta_graph.pb.h"
#include "tf_api.hpp"

namespace {

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace celsius::serving;
  std::string model_dir, signature = "serving_default";
  double seconds = 3;
  std::vector<std::int64_t> batch_sizes{1, 64};
  int intra_op = 0, inter_op = 0;
  CLI::App app{"TF_SessionRun microbenchmark (CPU and wall time per run)"};
  app.add_option("--model_dir", model_dir, "A version folder of the SavedModel")->required();
  app.add_option("--seconds", seconds, "Measuring time per batch size");
  app.add_option("--batch_sizes", batch_sizes, "Values per run")->delimiter(',');
  app.add_option("--signature", signature, "Signature to run (one input, one output)");
  app.add_option("--intra_op_parallelism", intra_op, "ConfigProto.intra_op_parallelism_threads (0: default)");
  app.add_option("--inter_op_parallelism", inter_op,
                 "ConfigProto.inter_op_parallelism_threads (0: default; negative: the caller's thread)");
  CLI11_PARSE(app, argc, argv);

  std::string error;
  const auto tf = tf_library::open({CELSIUS_TENSORFLOW_BUILD_DIR, ""}, error);
  if (!tf) {
    std::cerr << error << "\n";
    return 1;
  }
  std::unique_ptr<saved_model> model;
  tensorflow::ConfigProto config;
  config.set_intra_op_parallelism_threads(intra_op);
  config.set_inter_op_parallelism_threads(inter_op);
  if (status s = saved_model::load(*tf, model_dir, {"serve"}, config.SerializeAsString(), model); !s.ok()) {
    std::cerr << "load failed: " << s.message() << "\n";
    return 1;
  }
  const bound_signature* sig = model->signature(signature);
  if (sig == nullptr || sig->inputs.size() != 1 || sig->outputs.empty()) {
    std::cerr << "signature " << signature << " not found or not one input\n";
    return 1;
  }
  const tensor_binding* input = &sig->inputs.begin()->second;
  const tensor_binding* output = &sig->outputs.begin()->second;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> temps(-459.67, 1000);
  std::cout << "TensorFlow " << tf->version() << ", " << model_dir << ", intra_op " << intra_op << ", inter_op "
            << inter_op << "\n";
  for (const std::int64_t batch : batch_sizes) {
    std::vector<double> values(static_cast<std::size_t>(batch));
    for (auto& v : values) v = temps(rng);
    const std::int64_t dims[] = {batch};
    std::vector<runtime_tensor> results;
    const auto run_once = [&] {
      // As the server does per request: allocate and fill the input, run, read the output.
      std::vector<runtime_tensor> feeds;
      feeds.push_back(model->allocate(input->dtype, dims));
      std::memcpy(feeds.back().bytes().data(), values.data(), values.size() * sizeof(double));
      const tensor_binding* in[] = {input};
      const tensor_binding* out[] = {output};
      if (status s = model->run(in, feeds, out, results, 0); !s.ok()) {
        std::cerr << "run failed: " << s.message() << "\n";
        std::exit(1);
      }
    };
    for (int i = 0; i < 200; ++i) run_once();  // warm-up
    const auto wall0 = std::chrono::steady_clock::now();
    const double cpu0 = process_cpu_seconds();
    std::int64_t runs = 0;
    while (std::chrono::steady_clock::now() - wall0 < std::chrono::duration<double>(seconds)) {
      for (int i = 0; i < 100; ++i) run_once();
      runs += 100;
    }
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    const double cpu = process_cpu_seconds() - cpu0;
    std::cout << "batch_size=" << batch << " runs=" << runs
              << " wall_us_per_run=" << wall * 1e6 / static_cast<double>(runs)
              << " cpu_us_per_run=" << cpu * 1e6 / static_cast<double>(runs) << "\n";
  }
  return 0;
}
