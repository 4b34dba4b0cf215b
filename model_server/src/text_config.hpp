#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "status.hpp"
#include "tensorflow_serving_config.pb.h"

namespace google::protobuf {
class Message;
}

namespace celsius::serving {

// Reads a text-format proto file into `message` (protobuf's TextFormat, as TF Serving's
// ParseProtoTextFile). Fields `message` does not declare are skipped, each reported in
// `ignored` ("line 3: ..."). Errors: the file cannot be read (NOT_FOUND or the errno
// text), or it is not valid text format: INVALID_ARGUMENT "Invalid protobuf file: '<file>'"
// (TF Serving's message) with the parser's line and column appended.
status read_text_proto(const std::string& path, google::protobuf::Message& message, std::vector<std::string>& ignored);

// The batch scheduler's settings: TF Serving's BatchingParameters over the defaults of
// TensorFlow's BasicBatchScheduler::Options (max_batch_size 1000, batch_timeout_micros 0,
// max_enqueued_batches 10, num_batch_threads = the schedulable CPUs).
struct batching_options {
  std::int64_t max_batch_size = 1000;
  std::int64_t batch_timeout_micros = 0;
  std::int64_t max_enqueued_batches = 10;
  std::int64_t num_batch_threads = 1;
  std::string thread_pool_name = "model_server_batch_threads";
  std::vector<std::int64_t> allowed_batch_sizes;
  bool pad_variable_length_inputs = false;
};

// Applies `params` over the defaults and checks them (positive sizes and counts;
// allowed_batch_sizes increasing, its last entry equal to max_batch_size, as TF Serving's
// batching_session.cc requires).
status batching_options_from(const tensorflow::serving::BatchingParameters& params, int cpus, batching_options& out);

}  // namespace celsius::serving
