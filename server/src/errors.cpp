#include "errors.hpp"

#include "json_write.hpp"

namespace celsius {

unsigned http_status(error_code code) noexcept {
  switch (code) {
    case error_code::bad_request:
    case error_code::invalid_json:
      return 400;
    case error_code::not_found:
      return 404;
    case error_code::method_not_allowed:
      return 405;
    case error_code::request_timeout:
      return 408;
    case error_code::batch_too_large:
    case error_code::payload_too_large:
      return 413;
    case error_code::unsupported_media_type:
      return 415;
    case error_code::validation_error:
    case error_code::below_absolute_zero:
      return 422;
    case error_code::header_too_large:
      return 431;
    case error_code::internal_error:
      return 500;
    case error_code::not_implemented:
      return 501;
    case error_code::model_error:
      return 502;
    case error_code::model_not_configured:
    case error_code::model_unavailable:
      return 503;
    case error_code::model_timeout:
      return 504;
  }
  return 500;
}

std::string_view code_name(error_code code) noexcept {
  switch (code) {
    case error_code::bad_request:
      return "bad_request";
    case error_code::invalid_json:
      return "invalid_json";
    case error_code::not_found:
      return "not_found";
    case error_code::method_not_allowed:
      return "method_not_allowed";
    case error_code::request_timeout:
      return "request_timeout";
    case error_code::batch_too_large:
      return "batch_too_large";
    case error_code::payload_too_large:
      return "payload_too_large";
    case error_code::unsupported_media_type:
      return "unsupported_media_type";
    case error_code::validation_error:
      return "validation_error";
    case error_code::below_absolute_zero:
      return "below_absolute_zero";
    case error_code::header_too_large:
      return "header_too_large";
    case error_code::internal_error:
      return "internal_error";
    case error_code::not_implemented:
      return "not_implemented";
    case error_code::model_error:
      return "model_error";
    case error_code::model_not_configured:
      return "model_not_configured";
    case error_code::model_unavailable:
      return "model_unavailable";
    case error_code::model_timeout:
      return "model_timeout";
  }
  return "internal_error";
}

std::string error_body(const api_error& error) {
  std::string out;
  out.reserve(48 + error.message.size());
  out += R"({"error":{"code":")";
  out += code_name(error.code);
  out += R"(","message":)";
  append_json_string(out, error.message);
  out += "}}";
  return out;
}

}  // namespace celsius
