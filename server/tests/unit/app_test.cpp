#include "app.hpp"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

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
  EXPECT_EQ(res.allow, "GET, POST");
  for (const char* target : {"/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"}) {
    const auto r = call("POST", target, "{}");
    EXPECT_EQ(r.status, 405u) << target;
    EXPECT_EQ(r.allow, "GET") << target;
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

TEST_F(app_test, readiness_check) {
  app_.set_readiness_check([] { return readiness{false, "model \"f2c\" not loaded"}; });
  const auto res = call("GET", "/readyz");
  EXPECT_EQ(res.status, 503u);
  EXPECT_EQ(res.body, R"({"status":"not_ready","reason":"model \"f2c\" not loaded"})");
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
