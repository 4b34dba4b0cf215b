#pragma once

#include <string>
#include <string_view>

namespace celsius {

// Every error the API returns. The snake_case name is the `error.code` clients see.
enum class error_code {
  bad_request,             // 400: the HTTP request itself is malformed
  invalid_json,            // 400
  not_found,               // 404
  method_not_allowed,      // 405
  request_timeout,         // 408: a request did not arrive whole within --request-timeout-ms
  batch_too_large,         // 413
  payload_too_large,       // 413
  unsupported_media_type,  // 415
  validation_error,        // 422
  below_absolute_zero,     // 422
  header_too_large,        // 431
  internal_error,          // 500
  not_implemented,         // 501: a transfer coding other than chunked (RFC 9112 section 6.1)
  model_error,             // 502: the model server answered with an error or a malformed reply
  model_not_configured,    // 503: the service runs without --model-server
  model_unavailable,       // 503: the model server cannot be reached (or failing fast)
  model_timeout,           // 504: the model server did not answer within --model-timeout-ms
};

struct api_error {
  error_code code;
  std::string message;
};

unsigned http_status(error_code code) noexcept;
std::string_view code_name(error_code code) noexcept;

// {"error":{"code":"...","message":"..."}}
std::string error_body(const api_error& error);

}  // namespace celsius
