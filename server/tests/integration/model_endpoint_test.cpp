// /convert/model end to end: the real celsius-server calling the real local model server
// (real TensorFlow runtime) over gRPC and REST, on free ports, through real sockets.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "http_client.hpp"
#include "json_helpers.hpp"
#include "model_server.hpp"

namespace celsius::test {
namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

template <typename Predicate>
bool wait_until(Predicate ready, std::chrono::milliseconds timeout) {
  const auto deadline = clock_type::now() + timeout;
  while (clock_type::now() < deadline) {
    if (ready()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return ready();
}

bool ready(std::uint16_t port) { return fetch(port, "GET", "/readyz").status == 200; }

std::string grpc_url(std::uint16_t port) { return "grpc://127.0.0.1:" + std::to_string(port); }
std::string rest_url(std::uint16_t port) { return "http://127.0.0.1:" + std::to_string(port); }

std::unique_ptr<server_process> start_service(const std::string& model_server, std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"--model-server", model_server, "--threads", "2"};
  args.insert(args.end(), extra.begin(), extra.end());
  return std::make_unique<server_process>(args);
}

// The model server on fixed ports, so it can be restarted where the service expects it.
std::unique_ptr<server_process> start_model_server_at(std::uint16_t grpc_port, std::uint16_t rest_port,
                                                      std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"--port", std::to_string(grpc_port), "--rest_api_port", std::to_string(rest_port)};
  args.insert(args.end(), extra.begin(), extra.end());
  return start_model_server(args);
}

// `/convert/model` answers are the `/convert` answer plus the model member.
constexpr std::string_view model_suffix = R"(,"model":{"name":"f2c","version":"1"}})";

std::string without_model(const std::string& body) {
  if (!body.ends_with(model_suffix)) return "<no model member> " + body;
  return body.substr(0, body.size() - model_suffix.size()) + "}";
}

std::string batch_body(const std::vector<double>& values, std::size_t from, std::size_t count) {
  std::string body = R"({"fahrenheit":[)";
  char text[64];
  for (std::size_t i = from; i < from + count && i < values.size(); ++i) {
    if (i != from) body += ',';
    std::snprintf(text, sizeof text, "%.17g", values[i]);
    body += text;
  }
  return body + "]}";
}

TEST(model_endpoint_unconfigured, answers_503_after_the_same_validation_and_stays_ready) {
  server_process service;
  const auto ok = fetch(service.port(), "POST", "/convert/model", R"({"fahrenheit": 1})");
  EXPECT_EQ(ok.status, 503u);
  expect_error(ok.body, "model_not_configured");
  EXPECT_EQ(fetch(service.port(), "GET", "/convert/model?fahrenheit=1").status, 503u);
  // Bad input is reported exactly as /convert reports it, before the model matters.
  for (const auto& [body, status] : std::vector<std::pair<std::string, unsigned>>{
           {R"({"fahrenheit": -500})", 422u}, {R"({"fahrenheit": "1"})", 422u}, {"{", 400u}, {"[]", 422u}}) {
    const auto model = fetch(service.port(), "POST", "/convert/model", body);
    const auto native = fetch(service.port(), "POST", "/convert", body);
    EXPECT_EQ(model.status, status) << body;
    EXPECT_EQ(model.body, native.body) << body;
  }
  EXPECT_EQ(fetch(service.port(), "POST", "/convert/model", "{}", "text/plain").status, 415u);
  EXPECT_EQ(fetch(service.port(), "PUT", "/convert/model").status, 405u);
  EXPECT_EQ(fetch(service.port(), "GET", "/readyz").status, 200u);
}

// One model server shared by the tests that do not stop it.
class model_endpoint : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (project_python().empty()) return;
    model_ = start_model_server().release();
    grpc_ = start_service(grpc_url(grpc_port_of(*model_))).release();
    rest_ = start_service(rest_url(model_->port())).release();
  }
  static void TearDownTestSuite() {
    for (server_process* p : {grpc_, rest_, model_}) {
      if (p != nullptr) EXPECT_EQ(p->stop(60s), 0);
      delete p;
    }
    grpc_ = rest_ = model_ = nullptr;
  }
  void SetUp() override {
    CELSIUS_REQUIRE_PYTHON();
    ASSERT_TRUE(wait_until([] { return ready(grpc_->port()); }, 30s)) << fetch(grpc_->port(), "GET", "/readyz").body;
    ASSERT_TRUE(wait_until([] { return ready(rest_->port()); }, 30s)) << fetch(rest_->port(), "GET", "/readyz").body;
  }
  static inline server_process* model_ = nullptr;
  static inline server_process* grpc_ = nullptr;
  static inline server_process* rest_ = nullptr;
};

TEST_F(model_endpoint, equals_convert_bit_for_bit_over_grpc_and_rest) {
  std::vector<double> values = {-459.67, -0.0, 0.0,   5e-324,  2.2250738585072014e-308,           1e-310, 32, 212, 98.6,
                                -40,     0.1,  1e300, 3.5e307, 1.7976931348623157e308 / 5 - 1e292};
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> temps(-459.67, 2000);
  for (int i = 0; i < 4000; ++i) values.push_back(temps(rng));
  std::uniform_int_distribution<std::uint64_t> bits;
  while (values.size() < 6000) {  // arbitrary doubles over the whole valid range
    const std::uint64_t b = bits(rng);
    double f = 0;
    std::memcpy(&f, &b, sizeof f);
    if (std::isfinite(f) && f >= -459.67 && std::isfinite((f - 32) * 5)) values.push_back(f);
  }
  for (const server_process* service : {grpc_, rest_}) {
    connection conn(service->port());
    for (std::size_t from = 0; from < values.size(); from += 500) {
      const std::string body = batch_body(values, from, 500);
      conn.send(request("POST", "/convert", body));
      const auto native = conn.read_response();
      conn.send(request("POST", "/convert/model", body));
      const auto model = conn.read_response();
      ASSERT_TRUE(native && model);
      ASSERT_EQ(model->status, 200u) << model->body;
      ASSERT_EQ(without_model(model->body), native->body);
    }
    // Single values, POST and GET.
    for (const char* f : {"-459.67", "98.6", "-0.0", "1e-320", "451"}) {
      const std::string body = std::string(R"({"fahrenheit":)") + f + "}";
      const auto native = fetch(service->port(), "POST", "/convert", body);
      const auto model = fetch(service->port(), "POST", "/convert/model", body);
      EXPECT_EQ(without_model(model.body), native.body) << f;
      const auto get = fetch(service->port(), "GET", std::string("/convert/model?fahrenheit=") + f);
      EXPECT_EQ(without_model(get.body), native.body) << f;
    }
  }
}

// The value of the metric line starting with `series` (0 when absent).
double metric(std::uint16_t port, const std::string& series) {
  const std::string text = fetch(port, "GET", "/metrics").body;
  const auto at = text.find("\n" + series + " ");
  return at == std::string::npos ? 0 : std::stod(text.substr(at + series.size() + 2));
}

TEST_F(model_endpoint, counts_model_calls_in_metrics) {
  const std::uint16_t port = grpc_->port();
  const double ok = metric(port, R"(celsius_model_requests_total{outcome="ok"})");
  const double timed = metric(port, "celsius_model_request_duration_seconds_count");
  for (int i = 0; i < 3; ++i) fetch(port, "POST", "/convert/model", R"({"fahrenheit": 50})");
  // Counted after the answer is written, possibly on another loop: poll.
  EXPECT_TRUE(wait_until(
      [&] {
        return metric(port, R"(celsius_model_requests_total{outcome="ok"})") == ok + 3 &&
               metric(port, "celsius_model_request_duration_seconds_count") == timed + 3;
      },
      5s))
      << fetch(port, "GET", "/metrics").body;
  EXPECT_EQ(metric(port, "celsius_model_requests_in_flight"), 0);
  EXPECT_EQ(metric(port, R"(celsius_model_requests_total{outcome="rejected"})"), 0);
}

TEST(model_endpoint_faults, readiness_follows_the_model_server_and_recovers_without_restart) {
  CELSIUS_REQUIRE_PYTHON();
  const auto ports = unused_ports(2);
  const std::uint16_t grpc_port = ports[0];
  const auto service = start_service(grpc_url(grpc_port), {"--model-timeout-ms", "500"});
  // Nothing listens yet: not ready, and model calls fail fast and clearly.
  ASSERT_TRUE(wait_until(
      [&] { return fetch(service->port(), "GET", "/readyz").body.find("not_ready") != std::string::npos; }, 5s));
  const auto down = fetch(service->port(), "GET", "/readyz");
  EXPECT_EQ(down.status, 503u);
  const auto doc = parse_json(down.body);
  EXPECT_EQ(std::string(doc["status"].GetString()), "not_ready");
  EXPECT_NE(std::string(doc["reason"].GetString()).find("f2c"), std::string::npos) << down.body;
  const auto started = clock_type::now();
  const auto unavailable = fetch(service->port(), "POST", "/convert/model", R"({"fahrenheit": 1})");
  EXPECT_EQ(unavailable.status, 503u);
  expect_error(unavailable.body, "model_unavailable");
  EXPECT_LT(clock_type::now() - started, 1000ms);  // within the deadline, never a hang
  EXPECT_EQ(fetch(service->port(), "GET", "/healthz").status, 200u);
  EXPECT_EQ(fetch(service->port(), "POST", "/convert", R"({"fahrenheit": 1})").status, 200u);

  auto model = start_model_server_at(grpc_port, ports[1]);
  ASSERT_TRUE(wait_until([&] { return ready(service->port()); }, 30s));
  EXPECT_TRUE(wait_until(
      [&] { return fetch(service->port(), "POST", "/convert/model", R"({"fahrenheit": 1})").status == 200; }, 5s));

  model->signal(SIGKILL);
  model->wait_exit(10s);
  EXPECT_TRUE(wait_until([&] { return !ready(service->port()); }, 10s));
  EXPECT_EQ(fetch(service->port(), "GET", "/healthz").status, 200u);

  model = start_model_server_at(grpc_port, ports[1]);
  EXPECT_TRUE(wait_until([&] { return ready(service->port()); }, 30s));
  EXPECT_TRUE(wait_until(
      [&] { return fetch(service->port(), "POST", "/convert/model", R"({"fahrenheit": 1})").status == 200; }, 5s));
  EXPECT_EQ(model->stop(60s), 0);
  EXPECT_EQ(service->stop(), 0);
}

class model_endpoint_protocols : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { CELSIUS_REQUIRE_PYTHON(); }
  // The service's --model-server value for a model server on these ports.
  std::string url(std::uint16_t grpc_port, std::uint16_t rest_port) const {
    return GetParam() == "grpc" ? grpc_url(grpc_port) : rest_url(rest_port);
  }
};

TEST_P(model_endpoint_protocols, killing_the_model_server_under_load_leaves_native_untouched) {
  const auto ports = unused_ports(2);
  const std::uint16_t grpc_port = ports[0];
  const std::uint16_t rest_port = ports[1];
  auto model = start_model_server_at(grpc_port, rest_port);
  const auto service = start_service(url(grpc_port, rest_port), {"--model-timeout-ms", "1000"});
  ASSERT_TRUE(wait_until([&] { return ready(service->port()); }, 30s));

  std::mutex mutex;
  std::map<unsigned, int> native_statuses, model_statuses;
  std::atomic<bool> stop{false};
  std::atomic<bool> restarted{false};
  std::atomic<int> model_ok_after_restart{0};
  std::vector<std::thread> clients;
  struct join_all {  // also when an assertion or exception leaves the test early
    std::atomic<bool>& stop;
    std::vector<std::thread>& threads;
    ~join_all() {
      stop = true;
      for (auto& t : threads) t.join();
    }
  } joiner{stop, clients};
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      auto conn = std::make_unique<connection>(service->port());
      for (int i = 0; !stop; ++i) {
        const bool to_model = (i + c) % 2 == 0;
        conn->send(request("POST", to_model ? "/convert/model" : "/convert", R"({"fahrenheit": [1, 2, 3]})"));
        const auto res = conn->read_response();
        const unsigned status = res ? res->status : 0;
        {
          std::lock_guard lock(mutex);
          ++(to_model ? model_statuses : native_statuses)[status];
        }
        if (to_model && status == 200 && restarted) ++model_ok_after_restart;
        if (!res || !res->keep_alive) conn = std::make_unique<connection>(service->port());
      }
    });
  }
  std::this_thread::sleep_for(1s);
  model->signal(SIGKILL);
  model->wait_exit(10s);
  std::this_thread::sleep_for(2s);  // load against a dead model server
  model = start_model_server_at(grpc_port, rest_port);
  restarted = true;
  const bool recovered = wait_until([&] { return model_ok_after_restart >= 20; }, 30s);
  stop = true;
  for (auto& t : clients) t.join();
  clients.clear();

  std::lock_guard lock(mutex);
  EXPECT_TRUE(recovered) << "no recovery after the model server came back";
  ASSERT_EQ(native_statuses.size(), 1u) << "native answers other than 200";
  EXPECT_EQ(native_statuses.begin()->first, 200u);
  EXPECT_GT(native_statuses[200], 100);
  for (const auto& [status, count] : model_statuses) {
    EXPECT_TRUE(status == 200 || status == 503 || status == 504) << status << " x" << count;
  }
  EXPECT_GT(model_statuses[503] + model_statuses[504], 0);
  EXPECT_EQ(model->stop(60s), 0);
  EXPECT_EQ(service->stop(), 0);
}

TEST_P(model_endpoint_protocols, a_slow_model_server_gives_504_within_the_deadline) {
  const auto model = start_model_server({"--celsius_reply_delay_ms", "1500"});
  const auto service = start_service(url(grpc_port_of(*model), model->port()), {"--model-timeout-ms", "300"});
  ASSERT_TRUE(wait_until([&] { return ready(service->port()); }, 30s));  // status calls are not delayed
  const auto started = clock_type::now();
  const auto res = fetch(service->port(), "POST", "/convert/model", R"({"fahrenheit": 1})");
  const auto took = clock_type::now() - started;
  EXPECT_EQ(res.status, 504u);
  expect_error(res.body, "model_timeout");
  EXPECT_LT(took, 1200ms);
  EXPECT_EQ(fetch(service->port(), "POST", "/convert", R"({"fahrenheit": 1})").status, 200u);
  EXPECT_EQ(service->stop(), 0);
}

TEST_P(model_endpoint_protocols, malformed_replies_are_502) {
  const auto model = start_model_server({"--celsius_malformed_replies"});
  const auto service = start_service(url(grpc_port_of(*model), model->port()));
  ASSERT_TRUE(wait_until([&] { return ready(service->port()); }, 30s));
  const auto res = fetch(service->port(), "POST", "/convert/model", R"({"fahrenheit": [1, 2]})");
  EXPECT_EQ(res.status, 502u);
  EXPECT_NE(expect_error(res.body, "model_error").find("malformed"), std::string::npos) << res.body;
  EXPECT_EQ(service->stop(), 0);
}

TEST_P(model_endpoint_protocols, model_server_errors_are_502_with_its_message) {
  const auto model = start_model_server();
  const auto service = start_service(url(grpc_port_of(*model), model->port()), {"--model-name", "nope"});
  const auto res = fetch(service->port(), "POST", "/convert/model", R"({"fahrenheit": 1})");
  EXPECT_EQ(res.status, 502u);
  EXPECT_NE(expect_error(res.body, "model_error").find("Servable not found"), std::string::npos) << res.body;
  // The model never becomes AVAILABLE under that name.
  const auto readyz = fetch(service->port(), "GET", "/readyz");
  EXPECT_EQ(readyz.status, 503u);
  EXPECT_NE(readyz.body.find("nope"), std::string::npos) << readyz.body;
  EXPECT_EQ(service->stop(), 0);
}

TEST_P(model_endpoint_protocols, shutdown_waits_for_a_model_call_in_flight) {
  const auto model = start_model_server({"--celsius_reply_delay_ms", "700"});
  const auto service = start_service(url(grpc_port_of(*model), model->port()), {"--model-timeout-ms", "5000"});
  ASSERT_TRUE(wait_until([&] { return ready(service->port()); }, 30s));
  connection conn(service->port());
  conn.send(request("POST", "/convert/model", R"({"fahrenheit": 212})"));
  std::this_thread::sleep_for(200ms);
  service->signal(SIGTERM);
  const auto res = conn.read_response();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200u) << res->body;
  EXPECT_NE(res->body.find(R"("celsius":100)"), std::string::npos) << res->body;
  EXPECT_EQ(service->wait_exit(15s), 0);
}

INSTANTIATE_TEST_SUITE_P(protocols, model_endpoint_protocols, ::testing::Values("grpc", "rest"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace celsius::test
