#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "config.hpp"
#include "json_body.hpp"
#include "metrics.hpp"
#include "model_client.hpp"

namespace celsius {

// What the router needs of an HTTP request; the transport fills it in.
struct request_view {
  std::string_view method;        // as sent, e.g. "POST"
  std::string_view target;        // path and query, e.g. "/convert?fahrenheit=1"
  std::string_view content_type;  // empty when absent
  std::string_view body;
};

struct response {
  unsigned status = 200;
  std::string body;
  std::string_view content_type = "application/json";
  std::string_view allow;          // set on 405
  std::string_view cache_control;  // set on static assets
  route matched = route::unmatched;
  // Set when the answer needs the model server: the transport calls it with these
  // values and answers with model_answer() instead of this response.
  std::optional<convert_input> model_call;
};

// The service's own readiness as /readyz reports it: ready, or the reason it is not. The
// model server's state never enters it (it is reported beside it).
struct readiness {
  bool ready = true;
  std::string reason;
};

// Shared, read-only application state: one per process, used from every thread.
class model_gateway;

class app {
 public:
  app(config cfg, std::string app_id, metrics_registry& metrics);

  // Routes and answers one request. Pure apart from reading metrics for /metrics;
  // never throws for any input.
  response handle(const request_view& request) const;

  const std::string& app_id() const noexcept { return app_id_; }
  const config& cfg() const noexcept { return cfg_; }

  // Replaces the service's readiness check (default: always ready).
  void set_readiness_check(std::function<readiness()> check) { readiness_check_ = std::move(check); }

  // The model server behind /convert/model; without one those requests get 503
  // model_not_configured.
  void set_model(model_gateway* gateway) noexcept { model_ = gateway; }
  model_gateway* model() const noexcept { return model_; }

  // The /convert/model answer for validated `input` once the model server replied.
  // `known_version` names the served version when the reply does not (0: unknown).
  response model_answer(const convert_input& input, const predict_result& result, std::int64_t known_version) const;

 private:
  response convert(route r, const request_view& request, std::string_view query) const;

  config cfg_;
  std::string app_id_;
  std::string root_body_;
  metrics_registry& metrics_;
  std::function<readiness()> readiness_check_;
  model_gateway* model_ = nullptr;
};

// How a model call ended, for metrics.
model_outcome outcome_of(const predict_result& result) noexcept;

// The route label for a request target (path, optionally with a query).
route route_of(std::string_view target) noexcept;

// True for application/json with optional parameters ("application/json; charset=utf-8").
bool is_json_media_type(std::string_view content_type) noexcept;

}  // namespace celsius
