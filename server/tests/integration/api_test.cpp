// The API contract over real sockets against the real binary.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "convert.hpp"
#include "http_client.hpp"
#include "json_helpers.hpp"
#include "request_id.hpp"
#include "server_process.hpp"
#include "version.hpp"

namespace celsius::test {
namespace {

class api : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = std::make_unique<server_process>(std::vector<std::string>{
        "--threads", "2", "--max-batch", "5", "--max-body-bytes", "4096", "--max-header-bytes", "2048"});
  }
  static void TearDownTestSuite() {
    if (server_) EXPECT_EQ(server_->stop(), 0);
    server_.reset();
  }
  static std::uint16_t port() { return server_->port(); }
  static http_response post(std::string_view body, std::string_view content_type = "application/json") {
    return fetch(port(), "POST", "/convert", body, content_type);
  }
  static std::string app_id() {
    const auto doc = parse_json(fetch(port(), "GET", "/").body);
    return doc["app_id"].GetString();
  }

  static inline std::unique_ptr<server_process> server_;
};

TEST_F(api, root_names_service_version_and_uuid4_app_id) {
  const auto res = fetch(port(), "GET", "/");
  EXPECT_EQ(res.status, 200u);
  EXPECT_EQ(res.header("content-type"), "application/json");
  const auto doc = parse_json(res.body);
  EXPECT_EQ(doc.MemberCount(), 3u);
  EXPECT_STREQ(doc["service"].GetString(), "celsius");
  EXPECT_EQ(std::string(doc["version"].GetString()), std::string(version));
  const std::string id = doc["app_id"].GetString();
  EXPECT_TRUE(is_uuid_v4(id)) << id;
  EXPECT_EQ(res.header("x-app-id"), id);
}

TEST_F(api, health_and_readiness) {
  const auto health = fetch(port(), "GET", "/healthz");
  EXPECT_EQ(health.status, 200u);
  EXPECT_EQ(health.body, R"({"status":"ok"})");
  const auto ready = fetch(port(), "GET", "/readyz");
  EXPECT_EQ(ready.status, 200u);
  EXPECT_EQ(ready.body, R"({"status":"ready"})");
}

TEST_F(api, convert_single_value) {
  const auto res = post(R"({"fahrenheit": 212})");
  ASSERT_EQ(res.status, 200u) << res.body;
  const auto doc = parse_json(res.body);
  EXPECT_EQ(doc.MemberCount(), 3u);
  EXPECT_EQ(doc["fahrenheit"].GetDouble(), 212.0);
  EXPECT_EQ(doc["celsius"].GetDouble(), 100.0);
  EXPECT_EQ(std::string(doc["app_id"].GetString()), res.header("x-app-id"));
}

TEST_F(api, convert_result_is_the_exact_double) {
  for (const double f : {98.6, -459.67, -40.0, 0.1, 1e300, -0.0, 5e-324}) {
    char body[64];
    std::snprintf(body, sizeof body, R"({"fahrenheit": %.17g})", f);
    const auto res = post(body);
    ASSERT_EQ(res.status, 200u) << body << " -> " << res.body;
    const auto doc = parse_json(res.body);
    EXPECT_EQ(doc["celsius"].GetDouble(), to_celsius(f)) << res.body;
    EXPECT_EQ(doc["fahrenheit"].GetDouble(), f);
  }
}

TEST_F(api, convert_batch_keeps_order) {
  const auto res = post(R"({"fahrenheit": [212, 32, -40, 98.6, -459.67]})");
  ASSERT_EQ(res.status, 200u) << res.body;
  const auto doc = parse_json(res.body);
  const double in[] = {212, 32, -40, 98.6, -459.67};
  ASSERT_TRUE(doc["fahrenheit"].IsArray());
  ASSERT_EQ(doc["celsius"].Size(), 5u);
  for (rapidjson::SizeType i = 0; i < 5; ++i) {
    EXPECT_EQ(doc["fahrenheit"][i].GetDouble(), in[i]);
    EXPECT_EQ(doc["celsius"][i].GetDouble(), to_celsius(in[i]));
  }
}

TEST_F(api, convert_by_query) {
  const auto res = fetch(port(), "GET", "/convert?fahrenheit=-40");
  ASSERT_EQ(res.status, 200u);
  EXPECT_EQ(res.body, R"({"fahrenheit":-40,"celsius":-40,"app_id":")" + res.header("x-app-id") + "\"}");
  expect_error(fetch(port(), "GET", "/convert").body, "validation_error");
  EXPECT_EQ(fetch(port(), "GET", "/convert?fahrenheit=-500").status, 422u);
  EXPECT_EQ(fetch(port(), "GET", "/convert?fahrenheit=abc").status, 422u);
}

TEST_F(api, integers_are_numbers) {
  const auto doc = parse_json(post(R"({"fahrenheit": 50})").body);
  EXPECT_EQ(doc["celsius"].GetDouble(), 10.0);
}

TEST_F(api, malformed_json_is_400) {
  for (const char* body : {"", "{", R"({"fahrenheit": })", R"({"fahrenheit": 1,})", "{'fahrenheit': 1}",
                           R"({"fahrenheit": 1} x)", "\xff\xfe"}) {
    const auto res = post(body);
    EXPECT_EQ(res.status, 400u) << body;
    expect_error(res.body, "invalid_json");
  }
}

TEST_F(api, wrong_shapes_are_422_naming_the_field) {
  const std::pair<const char*, const char*> cases[] = {
      {"[1]", "JSON object"},
      {"32", "JSON object"},
      {"{}", "'fahrenheit'"},
      {R"({"celsius": 1})", "'fahrenheit'"},
      {R"({"fahrenheit": "32"})", "string"},
      {R"({"fahrenheit": true})", "boolean"},
      {R"({"fahrenheit": null})", "null"},
      {R"({"fahrenheit": {"v": 1}})", "object"},
      {R"({"fahrenheit": []})", "empty"},
      {R"({"fahrenheit": [1, [2]]})", "'fahrenheit[1]'"},
      {R"({"fahrenheit": [1, "2"]})", "'fahrenheit[1]'"},
      {R"({"fahrenheit": 1, "fahrenheit": 2})", "duplicate"},
  };
  for (const auto& [body, fragment] : cases) {
    const auto res = post(body);
    EXPECT_EQ(res.status, 422u) << body;
    const auto message = expect_error(res.body, "validation_error");
    EXPECT_NE(message.find(fragment), std::string::npos) << body << " -> " << message;
  }
}

TEST_F(api, out_of_range_and_non_finite_are_422) {
  for (const char* body :
       {R"({"fahrenheit": 1e400})", R"({"fahrenheit": NaN})", R"({"fahrenheit": Infinity})",
        R"({"fahrenheit": -Infinity})", R"({"fahrenheit": [0, 1e400]})", R"({"fahrenheit": 1e308})"}) {
    const auto res = post(body);
    EXPECT_EQ(res.status, 422u) << body;
    expect_error(res.body, "validation_error");
  }
  const auto message = expect_error(post(R"({"fahrenheit": [0, 1, -1e400]})").body, "validation_error");
  EXPECT_NE(message.find("'fahrenheit[2]'"), std::string::npos) << message;
}

TEST_F(api, absolute_zero_is_the_boundary) {
  EXPECT_EQ(post(R"({"fahrenheit": -459.67})").status, 200u);
  const auto below = post(R"({"fahrenheit": -459.68})");
  EXPECT_EQ(below.status, 422u);
  expect_error(below.body, "below_absolute_zero");
  const auto batch = post(R"({"fahrenheit": [0, -459.67, -460, -470]})");
  EXPECT_EQ(batch.status, 422u);
  const auto message = expect_error(batch.body, "below_absolute_zero");
  EXPECT_NE(message.find("'fahrenheit[2]'"), std::string::npos) << message;
}

TEST_F(api, batch_limit_is_413) {
  EXPECT_EQ(post(R"({"fahrenheit": [1, 2, 3, 4, 5]})").status, 200u);
  const auto res = post(R"({"fahrenheit": [1, 2, 3, 4, 5, 6]})");
  EXPECT_EQ(res.status, 413u);
  expect_error(res.body, "batch_too_large");
}

TEST_F(api, body_limit_is_413_without_reading_the_body) {
  // Declares a body far above the limit and sends none of it: the server must answer
  // from the head alone.
  connection c(port());
  c.send("POST /convert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n");
  const auto res = c.read_response();
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 413u);
  EXPECT_FALSE(res->keep_alive);
  expect_error(res->body, "payload_too_large");
}

TEST_F(api, chunked_body_over_the_limit_is_413) {
  connection c(port());
  c.send("POST /convert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
  const std::string chunk(1000, ' ');
  bool answered = false;
  for (int i = 0; i < 10 && !answered; ++i) {
    try {
      c.send("3e8\r\n" + chunk + "\r\n");
    } catch (const std::exception&) {
      break;  // the server already answered and stopped reading
    }
  }
  const auto res = c.read_response();
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 413u);
  expect_error(res->body, "payload_too_large");
}

TEST_F(api, chunked_body_within_the_limit_works) {
  connection c(port());
  c.send(
      "POST /convert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\n{\"fah\r\ne\r\nrenheit\": 212}\r\n0\r\n\r\n");
  const auto res = c.read_response();
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 200u) << res->body;
}

TEST_F(api, content_type_must_be_json) {
  EXPECT_EQ(post(R"({"fahrenheit": 1})", "application/json; charset=utf-8").status, 200u);
  EXPECT_EQ(post(R"({"fahrenheit": 1})", "Application/JSON").status, 200u);
  for (const char* type : {"text/plain", "application/x-www-form-urlencoded", ""}) {
    const auto res = post(R"({"fahrenheit": 1})", type);
    EXPECT_EQ(res.status, 415u) << type;
    expect_error(res.body, "unsupported_media_type");
  }
}

TEST_F(api, unknown_path_is_404_and_wrong_method_405_with_allow) {
  const auto missing = fetch(port(), "GET", "/nope");
  EXPECT_EQ(missing.status, 404u);
  expect_error(missing.body, "not_found");
  const auto wrong = fetch(port(), "DELETE", "/convert");
  EXPECT_EQ(wrong.status, 405u);
  EXPECT_EQ(wrong.header("allow"), "GET, HEAD, POST");
  expect_error(wrong.body, "method_not_allowed");
  const auto post_health = fetch(port(), "POST", "/healthz", "{}");
  EXPECT_EQ(post_health.status, 405u);
  EXPECT_EQ(post_health.header("allow"), "GET, HEAD");
}

TEST_F(api, oversized_headers_are_431) {
  connection c(port());
  c.send("GET / HTTP/1.1\r\nHost: x\r\nX-Padding: " + std::string(4000, 'a') + "\r\n\r\n");
  const auto res = c.read_response();
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 431u);
  expect_error(res->body, "header_too_large");
}

TEST_F(api, malformed_http_is_400) {
  connection c(port());
  c.send("GARBAGE\r\n\r\n");
  const auto res = c.read_response();
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 400u);
  expect_error(res->body, "bad_request");
}

TEST_F(api, request_ids_are_echoed_when_safe) {
  const auto echoed = fetch(port(), "GET", "/healthz", {}, {}, "X-Request-Id: trace-42.a:b\r\n");
  EXPECT_EQ(echoed.header("x-request-id"), "trace-42.a:b");
  for (const std::string bad : {std::string(129, 'a'), std::string("has space"), std::string("semi;colon")}) {
    const auto res = fetch(port(), "GET", "/healthz", {}, {}, "X-Request-Id: " + bad + "\r\n");
    EXPECT_NE(res.header("x-request-id"), bad);
    EXPECT_TRUE(is_uuid_v4(res.header("x-request-id"))) << res.header("x-request-id");
  }
  const auto a = fetch(port(), "GET", "/healthz");
  const auto b = fetch(port(), "GET", "/healthz");
  EXPECT_NE(a.header("x-request-id"), b.header("x-request-id"));
}

TEST_F(api, every_response_carries_the_app_id) {
  const std::string id = app_id();
  for (const auto& res :
       {fetch(port(), "GET", "/healthz"), fetch(port(), "GET", "/nope"), post("{"), fetch(port(), "GET", "/metrics")}) {
    EXPECT_EQ(res.header("x-app-id"), id);
  }
}

TEST_F(api, expect_100_continue) {
  connection c(port());
  const std::string body = R"({"fahrenheit": 212})";
  c.send(
      "POST /convert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n");
  const auto interim = c.read_response();
  ASSERT_TRUE(interim.has_value());
  EXPECT_EQ(interim->status, 100u);
  c.send(body);
  const auto res = c.read_response();
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 200u);
}

TEST_F(api, metrics_count_requests_by_route_method_and_status) {
  fetch(port(), "GET", "/nope/that/is/unknown");
  post(R"({"fahrenheit": 1})");
  // A request is counted right after its answer is written, on whichever loop served it,
  // so a scrape on another loop can briefly miss it: poll, as Prometheus would see it.
  http_response res;
  for (int i = 0; i < 100; ++i) {
    res = fetch(port(), "GET", "/metrics");
    if (res.body.find(R"(route="unmatched",method="GET",status="404")") != std::string::npos &&
        res.body.find(R"(route="/convert",method="POST",status="200")") != std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(res.status, 200u);
  EXPECT_EQ(res.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string& text = res.body;
  EXPECT_NE(text.find(R"(celsius_http_requests_total{route="/convert",method="POST",status="200"})"),
            std::string::npos);
  EXPECT_NE(text.find(R"(celsius_http_requests_total{route="unmatched",method="GET",status="404"})"),
            std::string::npos);
  EXPECT_EQ(text.find("/nope/that"), std::string::npos) << "unknown paths must not become labels";
  EXPECT_NE(text.find(R"(celsius_http_request_duration_seconds_bucket{route="/convert",le="+Inf"})"),
            std::string::npos);
  EXPECT_NE(text.find("celsius_http_requests_in_flight "), std::string::npos);
  EXPECT_NE(text.find("celsius_build_info{version=\"" + std::string(version) + "\",app_id=\"" + app_id() + "\"} 1"),
            std::string::npos);
}

TEST_F(api, openapi_document_and_docs_page) {
  const auto spec = fetch(port(), "GET", "/openapi.json");
  EXPECT_EQ(spec.status, 200u);
  const auto doc = parse_json(spec.body);
  EXPECT_EQ(std::string(doc["openapi"].GetString()).substr(0, 3), "3.1");
  EXPECT_EQ(std::string(doc["info"]["version"].GetString()), std::string(version));
  for (const char* path : {"/", "/healthz", "/readyz", "/convert", "/metrics", "/openapi.json", "/docs"}) {
    EXPECT_TRUE(doc["paths"].HasMember(path)) << path;
  }
  const auto page = fetch(port(), "GET", "/docs");
  EXPECT_EQ(page.status, 200u);
  EXPECT_EQ(page.header("content-type"), "text/html; charset=utf-8");
#if CELSIUS_SWAGGER_UI
  EXPECT_NE(page.body.find("/docs/swagger-ui-bundle.js"), std::string::npos);
  const auto js = fetch(port(), "GET", "/docs/swagger-ui-bundle.js");
  EXPECT_EQ(js.status, 200u);
  EXPECT_GT(js.body.size(), 100000u);
  EXPECT_NE(js.body.find("SwaggerUIBundle"), std::string::npos);
  EXPECT_EQ(fetch(port(), "GET", "/docs/swagger-ui.css").status, 200u);
#endif
  EXPECT_EQ(fetch(port(), "GET", "/docs/../openapi.json").status, 404u);
}

TEST_F(api, logs_one_json_line_per_request) {
  fetch(port(), "GET", "/healthz", {}, {}, "X-Request-Id: log-line-probe\r\n");
  ASSERT_TRUE(server_->wait_for_log("log-line-probe", std::chrono::seconds(5)));
  for (const auto& line : server_->log_lines()) {
    if (line.find("log-line-probe") == std::string::npos) continue;
    const auto doc = parse_json(line);
    EXPECT_STREQ(doc["msg"].GetString(), "request");
    EXPECT_STREQ(doc["path"].GetString(), "/healthz");
    EXPECT_EQ(doc["status"].GetInt(), 200);
    EXPECT_TRUE(doc.HasMember("ts") && doc.HasMember("duration_us"));
  }
}

}  // namespace
}  // namespace celsius::test
