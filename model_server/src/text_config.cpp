#include "text_config.hpp"

#include <fmt/format.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <cerrno>
#include <fstream>
#include <sstream>
#include <system_error>

namespace celsius::serving {

namespace {

class collector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column, const std::string& message) override {
    errors.push_back(fmt::format("line {} column {}: {}", line + 1, column + 1, message));
  }
  void AddWarning(int line, google::protobuf::io::ColumnNumber column, const std::string& message) override {
    warnings.push_back(fmt::format("line {} column {}: {}", line + 1, column + 1, message));
  }
  std::vector<std::string> errors, warnings;
};

}  // namespace

status read_text_proto(const std::string& path, google::protobuf::Message& message, std::vector<std::string>& ignored) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    return {err == ENOENT ? code::NOT_FOUND : code::FAILED_PRECONDITION,
            path + "; " + std::error_code(err, std::generic_category()).message()};
  }
  std::ostringstream text;
  text << in.rdbuf();
  google::protobuf::TextFormat::Parser parser;
  collector errors;
  parser.RecordErrorsTo(&errors);
  parser.AllowUnknownField(true);
  if (!parser.ParseFromString(text.str(), &message)) {
    std::string detail;
    for (const auto& e : errors.errors) detail += "; " + e;
    return invalid_argument("Invalid protobuf file: '" + path + "'" + detail);
  }
  ignored = std::move(errors.warnings);
  return {};
}

status batching_options_from(const tensorflow::serving::BatchingParameters& params, int cpus, batching_options& out) {
  out = batching_options{};
  out.num_batch_threads = cpus;
  if (params.has_max_batch_size()) out.max_batch_size = params.max_batch_size().value();
  if (params.has_batch_timeout_micros()) out.batch_timeout_micros = params.batch_timeout_micros().value();
  if (params.has_max_enqueued_batches()) out.max_enqueued_batches = params.max_enqueued_batches().value();
  if (params.has_num_batch_threads()) out.num_batch_threads = params.num_batch_threads().value();
  if (params.has_thread_pool_name()) out.thread_pool_name = params.thread_pool_name().value();
  out.allowed_batch_sizes.assign(params.allowed_batch_sizes().begin(), params.allowed_batch_sizes().end());
  out.pad_variable_length_inputs = params.pad_variable_length_inputs();

  if (out.max_batch_size <= 0) return invalid_argument("max_batch_size must be positive");
  if (out.batch_timeout_micros < 0) return invalid_argument("batch_timeout_micros must be non-negative");
  if (out.max_enqueued_batches <= 0) return invalid_argument("max_enqueued_batches must be positive");
  if (out.num_batch_threads <= 0) return invalid_argument("num_batch_threads must be positive");
  for (std::size_t i = 0; i < out.allowed_batch_sizes.size(); ++i) {
    if (out.allowed_batch_sizes[i] <= 0 || (i > 0 && out.allowed_batch_sizes[i] <= out.allowed_batch_sizes[i - 1])) {
      return invalid_argument("allowed_batch_sizes entries must be monotonically increasing");
    }
  }
  if (!out.allowed_batch_sizes.empty() && out.allowed_batch_sizes.back() != out.max_batch_size) {
    return invalid_argument("final entry in allowed_batch_sizes must equal max_batch_size");
  }
  return {};
}

}  // namespace celsius::serving
