#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace celsius::serving {

// A REST request path, read with TF Serving's patterns (model_servers/http_rest_api_util.cc,
// RE2 full matches, case-insensitive):
//   POST (?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)
//   GET  (?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:\/(metadata))?
// The captures keep the request's spelling ("PREDICT" matches, and is then no known method,
// as in TF Serving). The model name and the label are percent-decoded.
struct rest_path {
  bool matched = false;
  std::string model_name;
  std::optional<std::int64_t> version;
  std::optional<std::string> label;
  std::string method;       // POST: classify|regress|predict as written
  std::string subresource;  // GET: "metadata" as written, or empty
};

// Fails (the error message, INVALID_ARGUMENT) on a version that does not fit int64 or a
// name or label that does not percent-decode, like ParseModelInfo.
struct rest_path_result {
  rest_path path;
  std::string error;
};
rest_path_result parse_rest_path(std::string_view method, std::string_view path);

// Percent-decoding as curl_easy_unescape does it ("%41" -> "A"; a '%' not followed by two
// hex digits stays as it is).
std::string percent_decode(std::string_view text);

}  // namespace celsius::serving
