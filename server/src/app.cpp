#include "app.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <exception>

#include "convert.hpp"
#include "docs.hpp"
#include "errors.hpp"
#include "json_body.hpp"
#include "json_write.hpp"
#include "logging.hpp"
#include "model_gateway.hpp"
#include "version.hpp"

namespace celsius {

namespace {

response error_response(route r, const api_error& error, std::string_view allow = {}) {
  response res;
  res.status = http_status(error.code);
  res.body = error_body(error);
  res.allow = allow;
  res.matched = r;
  return res;
}

response method_not_allowed(route r, std::string_view method, std::string_view allow) {
  return error_response(r,
                        {error_code::method_not_allowed, fmt::format("method {} is not allowed on {}; allowed: {}",
                                                                     method.substr(0, 32), route_name(r), allow)},
                        allow);
}

response ok(route r, std::string body, std::string_view content_type = "application/json") {
  response res;
  res.body = std::move(body);
  res.content_type = content_type;
  res.matched = r;
  return res;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

bool is_json_media_type(std::string_view content_type) noexcept {
  const std::string_view type = trim(content_type.substr(0, content_type.find(';')));
  constexpr std::string_view json = "application/json";
  return type.size() == json.size() && std::equal(type.begin(), type.end(), json.begin(), [](char a, char b) {
           return (a >= 'A' && a <= 'Z' ? static_cast<char>(a - 'A' + 'a') : a) == b;
         });
}

route route_of(std::string_view target) noexcept {
  const std::string_view path = target.substr(0, target.find('?'));
  if (path == "/") return route::root;
  if (path == "/healthz") return route::healthz;
  if (path == "/readyz") return route::readyz;
  if (path == "/convert") return route::convert;
  if (path == "/convert/model") return route::convert_model;
  if (path == "/metrics") return route::metrics;
  if (path == "/openapi.json") return route::openapi;
  if (path == "/docs" || path == "/docs/" || (path.starts_with("/docs/") && docs_asset(path.substr(6)))) {
    return route::docs;
  }
  return route::unmatched;
}

app::app(config cfg, std::string app_id, metrics_registry& metrics)
    : cfg_(std::move(cfg)),
      app_id_(std::move(app_id)),
      root_body_(fmt::format(R"({{"service":"celsius","version":"{}","app_id":"{}"}})", version, app_id_)),
      metrics_(metrics) {}

response app::handle(const request_view& request) const {
  try {
    const auto q = request.target.find('?');
    const std::string_view path = request.target.substr(0, q);
    const std::string_view query = q == std::string_view::npos ? std::string_view() : request.target.substr(q + 1);
    // HEAD is answered wherever GET is, with exactly the GET answer: the transport sends
    // its status and headers, Content-Length included, and never its body (RFC 9110
    // section 9.3.2).
    if (request.method == "HEAD") {
      request_view get = request;
      get.method = "GET";
      return handle(get);
    }
    const bool get = request.method == "GET";
    const route r = route_of(path);

    if (r == route::convert || r == route::convert_model) {
      if (get || request.method == "POST") return convert(r, request, query);
      return method_not_allowed(r, request.method, "GET, HEAD, POST");
    }

    if (r == route::unmatched) {
      return error_response(r, {error_code::not_found,
                                fmt::format("no route for {} {}", request.method.substr(0, 32), path.substr(0, 256))});
    }
    if (!get) return method_not_allowed(r, request.method, "GET, HEAD");

    switch (r) {
      case route::root:
        return ok(r, root_body_);
      case route::healthz:
        return ok(r, R"({"status":"ok"})");
      case route::readyz: {
        // Ready means this process can serve: the model server's state is reported in
        // the body but never makes the service unready (a shared dependency must not
        // take every replica out of its Service; /convert/model answers 503 on its own).
        const readiness state = readiness_check_ ? readiness_check_() : readiness{};
        std::string body = state.ready ? R"({"status":"ready")" : R"({"status":"not_ready","reason":)";
        if (!state.ready) append_json_string(body, state.reason);
        if (model_ != nullptr) {
          body += R"(,"model":)";
          model_->append_state_json(body);
        }
        body += '}';
        response res = ok(r, std::move(body));
        if (!state.ready) res.status = 503;
        return res;
      }
      case route::metrics: {
        std::string text = metrics_.render(version, app_id_, log_messages_dropped());
        if (model_ != nullptr) model_->append_metrics(text);
        return ok(r, std::move(text), "text/plain; version=0.0.4; charset=utf-8");
      }
      case route::openapi:
        return ok(r, std::string(openapi_document()));
      case route::docs: {
        if (path == "/docs" || path == "/docs/") return ok(r, std::string(docs_page()), "text/html; charset=utf-8");
        const auto asset = docs_asset(path.substr(6));
        response res = ok(r, std::string(asset->body), asset->content_type);
        res.cache_control = "public, max-age=86400";
        return res;
      }
      default:
        break;
    }
    return error_response(route::unmatched, {error_code::internal_error, "unrouted request"});
  } catch (const std::exception& e) {
    std::string fields = R"("what":)";
    append_json_string(fields, e.what());
    log_error("request handler failed", fields);
    return error_response(route::unmatched, {error_code::internal_error, "internal error"});
  }
}

response app::convert(route r, const request_view& request, std::string_view query) const {
  convert_parse_result parsed = [&]() -> convert_parse_result {
    if (request.method == "GET") return parse_convert_query(query);
    if (!is_json_media_type(request.content_type)) {
      return api_error{
          error_code::unsupported_media_type,
          request.content_type.empty()
              ? std::string("Content-Type must be application/json; none was sent")
              : fmt::format("Content-Type must be application/json, got '{}'", request.content_type.substr(0, 64))};
    }
    return parse_convert_body(request.body, cfg_.max_batch);
  }();
  if (auto* error = std::get_if<api_error>(&parsed)) return error_response(r, *error);

  convert_input& input = std::get<convert_input>(parsed);
  if (r == route::convert_model) {
    if (model_ == nullptr) {
      return error_response(r, {error_code::model_not_configured,
                                "no model server is configured (start the service with --model-server)"});
    }
    response res;
    res.matched = r;
    res.model_call = std::move(input);
    return res;
  }
  if (!input.batch) {
    const double f = input.fahrenheit.front();
    return ok(route::convert, convert_body(f, to_celsius(f), app_id_));
  }
  boost::container::small_vector<double, 4> celsius(input.fahrenheit.size());
  const std::span<const double> in(input.fahrenheit.data(), input.fahrenheit.size());
  const std::span<double> out(celsius.data(), celsius.size());
  to_celsius(in, out);
  return ok(route::convert, convert_batch_body(in, out, app_id_));
}

response app::model_answer(const convert_input& input, const predict_result& result, std::int64_t known_version) const {
  constexpr route r = route::convert_model;
  if (const auto* failure = std::get_if<model_error>(&result)) {
    switch (failure->kind) {
      case model_failure::unavailable:
      case model_failure::rejected:
        return error_response(r, {error_code::model_unavailable, failure->message});
      case model_failure::timeout:
        return error_response(r, {error_code::model_timeout, failure->message});
      case model_failure::error:
        return error_response(r, {error_code::model_error, failure->message});
      case model_failure::malformed:
        return error_response(r, {error_code::model_error, "malformed model server reply: " + failure->message});
    }
  }
  const auto& prediction = std::get<model_prediction>(result);
  if (prediction.celsius.size() != input.fahrenheit.size()) {
    return error_response(r,
                          {error_code::model_error, fmt::format("malformed model server reply: {} values for {} inputs",
                                                                prediction.celsius.size(), input.fahrenheit.size())});
  }
  for (const double c : prediction.celsius) {
    if (!std::isfinite(c)) {
      return error_response(r, {error_code::model_error, "malformed model server reply: a value is not finite"});
    }
  }
  const std::span<const double> in(input.fahrenheit.data(), input.fahrenheit.size());
  std::string body = input.batch ? convert_batch_body(in, prediction.celsius, app_id_)
                                 : convert_body(in.front(), prediction.celsius.front(), app_id_);
  body.pop_back();  // reopen the object to add the model that answered
  body += R"(,"model":{"name":)";
  append_json_string(body, model_->name());
  const std::int64_t served = prediction.version != 0 ? prediction.version : known_version;
  body += fmt::format(R"(,"version":"{}"}}}})", served);
  return ok(r, std::move(body));
}

model_outcome outcome_of(const predict_result& result) noexcept {
  const auto* failure = std::get_if<model_error>(&result);
  if (failure == nullptr) return model_outcome::ok;
  switch (failure->kind) {
    case model_failure::unavailable:
      return model_outcome::unavailable;
    case model_failure::timeout:
      return model_outcome::timeout;
    case model_failure::error:
      return model_outcome::error;
    case model_failure::malformed:
      return model_outcome::malformed;
    case model_failure::rejected:
      return model_outcome::rejected;
  }
  return model_outcome::error;
}

}  // namespace celsius
