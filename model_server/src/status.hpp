#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "tensorflow_error_codes.pb.h"

namespace celsius::serving {

using code = tensorflow::error::Code;

// A TensorFlow status: one of the canonical codes (equal to gRPC's) and a message. The
// messages are TensorFlow Serving's own wherever it has one (the source file is named where
// the status is made), because clients and tests match on them.
class status {
 public:
  status() = default;  // OK
  status(code c, std::string message) : code_(c), message_(std::move(message)) {}

  bool ok() const noexcept { return code_ == code::OK; }
  code error_code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

 private:
  code code_ = code::OK;
  std::string message_;
};

inline status invalid_argument(std::string m) { return {code::INVALID_ARGUMENT, std::move(m)}; }
inline status not_found_error(std::string m) { return {code::NOT_FOUND, std::move(m)}; }
inline status failed_precondition(std::string m) { return {code::FAILED_PRECONDITION, std::move(m)}; }
inline status internal_error(std::string m) { return {code::INTERNAL, std::move(m)}; }
inline status unavailable(std::string m) { return {code::UNAVAILABLE, std::move(m)}; }
inline status unimplemented(std::string m) { return {code::UNIMPLEMENTED, std::move(m)}; }

// "INVALID_ARGUMENT" etc. (tensorflow::error::Code_Name).
std::string_view code_name(code c);

// The HTTP status TF Serving's REST API answers for a status code
// (model_servers/http_server.cc, ToHTTPStatusCode): 400 for INVALID_ARGUMENT,
// FAILED_PRECONDITION and OUT_OF_RANGE, 404 NOT_FOUND, 429 RESOURCE_EXHAUSTED, 503
// UNAVAILABLE, 504 DEADLINE_EXCEEDED, 501 UNIMPLEMENTED, 499 CANCELLED, 409 ALREADY_EXISTS
// and ABORTED, 403 PERMISSION_DENIED, 401 UNAUTHENTICATED, 500 for the rest.
unsigned http_status_of(code c);

}  // namespace celsius::serving
