#include "app.hpp"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cmath>
#include <tuple>

#include "model_gateway.hpp"
#include "version.hpp"

namespace celsius {
namespace {

class app_test : public ::testing::Test {
 protected:
  app_test() : metrics_(1), app_(make_config(), "00000000-0000-4000-8000-000000000000", metrics_) {}
  static config make_config() {
    config c;
    c.max_batch = 3;
    return c;
  }
  response call(std::string_view method, std::string_view target, std::string_view body = {},
                std::string_view type = "application/json") {
    return app_.handle({method, target, type, body});
  }
  metrics_registry metrics_;
  app app_;
};

TEST_F(app_test, routes) {
  EXPECT_EQ(call("GET", "/").matched, route::root);
  EXPECT_EQ(call("GET", "/healthz").matched, route::healthz);
  EXPECT_EQ(call("GET", "/readyz").matched, route::readyz);
  EXPECT_EQ(call("GET", "/metrics").matched, route::metrics);
  EXPECT_EQ(call("GET", "/openapi.json").matched, route::openapi);
  EXPECT_EQ(call("GET", "/docs").matched, route::docs);
  EXPECT_EQ(call("GET", "/convert?fahrenheit=1").matched, route::convert);
  EXPECT_EQ(call("GET", "/convert/model?fahrenheit=1").matched, route::convert_model);
  EXPECT_EQ(call("GET", "/healthz?x=1").status, 200u);
  for (const char* target : {"/nope", "/convert/", "/HEALTHZ", "/healthz/x", "//", "/docs/x.js", "*"}) {
    const auto res = call("GET", target);
    EXPECT_EQ(res.status, 404u) << target;
    EXPECT_EQ(res.matched, route::unmatched) << target;
  }
}

TEST_F(app_test, root_body) {
  EXPECT_EQ(call("GET", "/").body, std::string(R"({"service":"celsius","version":")") + std::string(version) +
                                       R"(","app_id":"00000000-0000-4000-8000-000000000000"})");
}

TEST_F(app_test, methods) {
  const auto res = call("PUT", "/convert", "{}");
  EXPECT_EQ(res.status, 405u);
  EXPECT_EQ(res.allow, "GET, HEAD, POST");
  for (const char* target : {"/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"}) {
    const auto r = call("POST", target, "{}");
    EXPECT_EQ(r.status, 405u) << target;
    EXPECT_EQ(r.allow, "GET, HEAD") << target;
  }
}

TEST_F(app_test, head_gets_the_get_answer_wherever_get_works) {
  // Issue 10, item 5: HEAD /healthz was 405. The router answers HEAD exactly like GET
  // (the transport then leaves the body out).
  for (const char* target :
       {"/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/convert?fahrenheit=212",
        "/convert?fahrenheit=x", "/convert", "/nope", "/convert/model?fahrenheit=1"}) {
    const auto get = call("GET", target, {}, {});
    const auto head = call("HEAD", target, {}, {});
    EXPECT_EQ(head.status, get.status) << target;
    EXPECT_EQ(head.content_type, get.content_type) << target;
    EXPECT_EQ(head.allow, get.allow) << target;
    EXPECT_EQ(head.matched, get.matched) << target;
    if (get.matched != route::metrics) EXPECT_EQ(head.body, get.body) << target;
  }
}

TEST_F(app_test, convert) {
  auto res = call("POST", "/convert", R"({"fahrenheit": 212})");
  EXPECT_EQ(res.status, 200u);
  EXPECT_EQ(res.body, R"({"fahrenheit":212,"celsius":100,"app_id":"00000000-0000-4000-8000-000000000000"})");
  res = call("POST", "/convert", R"({"fahrenheit": [1, 2, 3, 4]})");
  EXPECT_EQ(res.status, 413u);
  res = call("POST", "/convert", R"({"fahrenheit": 1})", "text/json");
  EXPECT_EQ(res.status, 415u);
  res = call("POST", "/convert", R"({"fahrenheit": 1})", "application/jsonx");
  EXPECT_EQ(res.status, 415u);
  res = call("GET", "/convert?fahrenheit=212", {}, {});
  EXPECT_EQ(res.status, 200u);
}

TEST_F(app_test, convert_model_without_a_model_server) {
  auto res = call("POST", "/convert/model", R"({"fahrenheit": 212})");
  EXPECT_EQ(res.status, 503u);
  EXPECT_EQ(res.matched, route::convert_model);
  EXPECT_NE(res.body.find("model_not_configured"), std::string::npos);
  EXPECT_FALSE(res.model_call);
  // The query form too (found by the fuzzer: '%2e400' is the valid number .400).
  for (const char* method : {"GET", "HEAD"}) {
    res = call(method, "/convert/model?fahrenheit=%2e400", {}, {});
    EXPECT_EQ(res.status, 503u) << method;
    EXPECT_NE(res.body.find("model_not_configured"), std::string::npos) << method;
    EXPECT_EQ(call(method, "/convert?fahrenheit=%2e400", {}, {}).status, 200u) << method;
  }
  // Validation first, exactly as /convert.
  for (const char* body : {R"({"fahrenheit": -460})", R"({"fahrenheit": [1, 2, 3, 4]})", "{", R"({"f": 1})"}) {
    const auto model = call("POST", "/convert/model", body);
    const auto native = call("POST", "/convert", body);
    EXPECT_EQ(model.status, native.status) << body;
    EXPECT_EQ(model.body, native.body) << body;
  }
  EXPECT_EQ(call("DELETE", "/convert/model").status, 405u);
  EXPECT_EQ(call("GET", "/convert/model/x").status, 404u);
}

class app_with_model_test : public app_test {
 protected:
  app_with_model_test() : gateway_(nullptr, model_gateway_options{}) { app_.set_model(&gateway_); }
  convert_input input(std::vector<double> values, bool batch) {
    convert_input in;
    in.fahrenheit.assign(values.begin(), values.end());
    in.batch = batch;
    return in;
  }
  model_gateway gateway_;
};

TEST_F(app_with_model_test, a_valid_request_becomes_a_model_call) {
  const auto res = call("POST", "/convert/model", R"({"fahrenheit": [32, 212]})");
  ASSERT_TRUE(res.model_call);
  EXPECT_EQ(std::vector<double>(res.model_call->fahrenheit.begin(), res.model_call->fahrenheit.end()),
            (std::vector<double>{32, 212}));
  EXPECT_TRUE(res.model_call->batch);
  EXPECT_TRUE(call("GET", "/convert/model?fahrenheit=1").model_call);
  EXPECT_FALSE(call("POST", "/convert/model", R"({"fahrenheit": -500})").model_call);
}

TEST_F(app_with_model_test, model_answers_add_the_model_to_the_convert_body) {
  auto res = app_.model_answer(input({212}, false), model_prediction{{100.0}, 3}, 1);
  EXPECT_EQ(res.status, 200u);
  EXPECT_EQ(res.body, R"({"fahrenheit":212,"celsius":100,"app_id":"00000000-0000-4000-8000-000000000000",)"
                      R"("model":{"name":"f2c","version":"3"}})");
  // REST answers name no version: the one the status poll found is used.
  res = app_.model_answer(input({32, 212}, true), model_prediction{{0.0, 100.0}, 0}, 1);
  EXPECT_EQ(res.body, R"({"fahrenheit":[32,212],"celsius":[0,100],"app_id":"00000000-0000-4000-8000-000000000000",)"
                      R"("model":{"name":"f2c","version":"1"}})");
}

TEST_F(app_with_model_test, model_failures_map_to_502_503_504) {
  const auto in = input({1}, false);
  const std::vector<std::tuple<model_failure, unsigned, std::string>> cases = {
      {model_failure::unavailable, 503, "model_unavailable"},
      {model_failure::rejected, 503, "model_unavailable"},
      {model_failure::timeout, 504, "model_timeout"},
      {model_failure::error, 502, "model_error"},
      {model_failure::malformed, 502, "model_error"}};
  for (const auto& [kind, status, code] : cases) {
    const auto res = app_.model_answer(in, model_error{kind, "the detail"}, 1);
    EXPECT_EQ(res.status, status) << code;
    EXPECT_NE(res.body.find("\"code\":\"" + code + "\""), std::string::npos) << res.body;
    EXPECT_NE(res.body.find("the detail"), std::string::npos) << res.body;
    EXPECT_EQ(res.matched, route::convert_model);
  }
  // A reply that does not fit the request is not passed on.
  EXPECT_EQ(app_.model_answer(in, model_prediction{{1.0, 2.0}, 1}, 1).status, 502u);
  EXPECT_EQ(app_.model_answer(in, model_prediction{{NAN}, 1}, 1).status, 502u);
  EXPECT_EQ(app_.model_answer(in, model_prediction{{INFINITY}, 1}, 1).status, 502u);
}

TEST_F(app_with_model_test, readiness_reports_the_model_without_depending_on_it) {
  // Status not known yet (no poll has answered): the service is ready all the same.
  auto res = call("GET", "/readyz");
  EXPECT_EQ(res.status, 200u);
  EXPECT_EQ(res.body, R"({"status":"ready","model":{"name":"f2c","available":false,"failing_fast":false,)"
                      R"("reason":"model 'f2c': status not known yet"}})");
  app_.set_readiness_check([] { return readiness{false, "draining"}; });
  res = call("GET", "/readyz");
  EXPECT_EQ(res.status, 503u);
  EXPECT_TRUE(res.body.starts_with(R"({"status":"not_ready","reason":"draining","model":{"name":"f2c")")) << res.body;
  const std::string metrics = call("GET", "/metrics").body;
  EXPECT_NE(metrics.find("\ncelsius_model_available 0\n"), std::string::npos);
  EXPECT_NE(metrics.find("\ncelsius_model_failing_fast 0\n"), std::string::npos);
}

TEST(app_outcomes, every_result_has_a_metrics_outcome) {
  EXPECT_EQ(outcome_of(model_prediction{}), model_outcome::ok);
  EXPECT_EQ(outcome_of(model_error{model_failure::unavailable, ""}), model_outcome::unavailable);
  EXPECT_EQ(outcome_of(model_error{model_failure::timeout, ""}), model_outcome::timeout);
  EXPECT_EQ(outcome_of(model_error{model_failure::error, ""}), model_outcome::error);
  EXPECT_EQ(outcome_of(model_error{model_failure::malformed, ""}), model_outcome::malformed);
  EXPECT_EQ(outcome_of(model_error{model_failure::rejected, ""}), model_outcome::rejected);
}

TEST_F(app_test, readiness_check) {
  EXPECT_EQ(call("GET", "/readyz").body, R"({"status":"ready"})");
  app_.set_readiness_check([] { return readiness{false, "shutting \"down\""}; });
  const auto res = call("GET", "/readyz");
  EXPECT_EQ(res.status, 503u);
  EXPECT_EQ(res.body, R"({"status":"not_ready","reason":"shutting \"down\""})");
  EXPECT_EQ(call("GET", "/healthz").status, 200u) << "liveness never depends on readiness";
}

TEST_F(app_test, openapi_is_json_for_this_version) {
  const auto res = call("GET", "/openapi.json");
  rapidjson::Document doc;
  doc.Parse(res.body.c_str());
  ASSERT_FALSE(doc.HasParseError());
  EXPECT_EQ(std::string(doc["info"]["version"].GetString()), std::string(version));
}

TEST(media_type, json_detection) {
  EXPECT_TRUE(is_json_media_type("application/json"));
  EXPECT_TRUE(is_json_media_type("application/json; charset=utf-8"));
  EXPECT_TRUE(is_json_media_type(" APPLICATION/JSON ;charset=UTF-8"));
  EXPECT_FALSE(is_json_media_type(""));
  EXPECT_FALSE(is_json_media_type("application/json-patch+json"));
  EXPECT_FALSE(is_json_media_type("text/plain"));
  EXPECT_FALSE(is_json_media_type("application/jso"));
}

}  // namespace
}  // namespace celsius
