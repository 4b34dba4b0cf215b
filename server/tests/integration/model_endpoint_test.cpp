// /convert/model end to end: the real celsius-server calling the real local model server
// (real TensorFlow runtime) over gRPC and REST, on free ports, through real sockets.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "http_client.hpp"
#include "json_helpers.hpp"
#include "model_helpers.hpp"
#include "model_server.hpp"

namespace celsius::test {
namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

// Generous model deadline for tests whose subject is not the deadline: a busy machine must
// not turn their answers into 504s.
constexpr const char* relaxed_timeout_ms = "30000";

// One request on its own connection, read with a timeout longer than any model deadline
// these tests set.
http_response call(std::uint16_t port, const std::string& method, const std::string& target,
                   const std::string& body = {}) {
  connection conn(port, 60s);
  conn.send(request(method, target, body));
  auto res = conn.read_response();
  return res ? *res : http_response{};
}

std::string grpc_url(std::uint16_t port) { return "grpc://127.0.0.1:" + std::to_string(port); }
std::string rest_url(std::uint16_t port) { return "http://127.0.0.1:" + std::to_string(port); }

std::unique_ptr<server_process> start_service(const std::string& model_server, std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"--model-server", model_server, "--threads", "2"};
  if (std::find(extra.begin(), extra.end(), "--model-timeout-ms") == extra.end()) {
    args.insert(args.end(), {"--model-timeout-ms", relaxed_timeout_ms});
  }
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
    ASSERT_TRUE(wait_until([] { return model_available(grpc_->port()); }, 60s)) << readyz(grpc_->port()).body;
    ASSERT_TRUE(wait_until([] { return model_available(rest_->port()); }, 60s)) << readyz(rest_->port()).body;
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
    connection conn(service->port(), 60s);
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
      const auto native = call(service->port(), "POST", "/convert", body);
      const auto model = call(service->port(), "POST", "/convert/model", body);
      EXPECT_EQ(without_model(model.body), native.body) << f;
      const auto get = call(service->port(), "GET", std::string("/convert/model?fahrenheit=") + f);
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
  for (int i = 0; i < 3; ++i) call(port, "POST", "/convert/model", R"({"fahrenheit": 50})");
  // Counted after the answer is written, possibly on another loop: poll.
  EXPECT_TRUE(wait_until(
      [&] {
        return metric(port, R"(celsius_model_requests_total{outcome="ok"})") == ok + 3 &&
               metric(port, "celsius_model_request_duration_seconds_count") == timed + 3;
      },
      30s))
      << fetch(port, "GET", "/metrics").body;
  EXPECT_EQ(metric(port, "celsius_model_requests_in_flight"), 0);
  EXPECT_EQ(metric(port, R"(celsius_model_requests_total{outcome="rejected"})"), 0);
  EXPECT_EQ(metric(port, "celsius_model_available"), 1);
  EXPECT_EQ(metric(port, "celsius_model_failing_fast"), 0);
}

// Issue 11, defect 2: the service stays ready through a model-server outage (readiness
// means the service can serve; /convert does not need the model), while /readyz reports
// the model's state, /convert/model fails fast with 503 and recovers by itself.
TEST(model_endpoint_faults, readiness_stays_while_the_model_state_follows_the_model_server) {
  CELSIUS_REQUIRE_PYTHON();
  const auto ports = unused_ports(2);
  const std::uint16_t grpc_port = ports[0];
  const auto service = start_service(grpc_url(grpc_port));
  // Nothing listens yet: ready, the model reported unavailable, model calls fail fast.
  ASSERT_TRUE(wait_until([&] { return !readyz(service->port()).model_reason.empty(); }, 30s));
  const auto down = readyz(service->port());
  EXPECT_EQ(down.status, 200u) << down.body;
  EXPECT_TRUE(down.ready) << down.body;
  EXPECT_FALSE(down.model_available) << down.body;
  EXPECT_NE(down.model_reason.find("f2c"), std::string::npos) << down.body;
  const auto started = clock_type::now();
  const auto unavailable = call(service->port(), "POST", "/convert/model", R"({"fahrenheit": 1})");
  EXPECT_EQ(unavailable.status, 503u);
  expect_error(unavailable.body, "model_unavailable");
  // Refused connections fail at once, far inside the 30 s deadline (no waiting for it).
  EXPECT_LT(clock_type::now() - started, 10s);
  EXPECT_EQ(fetch(service->port(), "GET", "/healthz").status, 200u);
  EXPECT_EQ(fetch(service->port(), "POST", "/convert", R"({"fahrenheit": 1})").status, 200u);

  auto model = start_model_server_at(grpc_port, ports[1]);
  ASSERT_TRUE(wait_until([&] { return model_available(service->port()); }, 60s)) << readyz(service->port()).body;
  EXPECT_TRUE(wait_until(
      [&] { return call(service->port(), "POST", "/convert/model", R"({"fahrenheit": 1})").status == 200; }, 30s));

  model->signal(SIGKILL);
  model->wait_exit(10s);
  EXPECT_TRUE(wait_until([&] { return !model_available(service->port()); }, 30s));
  const auto outage = readyz(service->port());
  EXPECT_EQ(outage.status, 200u) << outage.body;
  EXPECT_EQ(fetch(service->port(), "GET", "/healthz").status, 200u);
  EXPECT_EQ(fetch(service->port(), "POST", "/convert", R"({"fahrenheit": 1})").status, 200u);
  const std::string metrics = fetch(service->port(), "GET", "/metrics").body;
  EXPECT_NE(metrics.find("\ncelsius_model_available 0\n"), std::string::npos) << metrics;

  model = start_model_server_at(grpc_port, ports[1]);
  EXPECT_TRUE(wait_until([&] { return model_available(service->port()); }, 60s));
  EXPECT_TRUE(wait_until(
      [&] { return call(service->port(), "POST", "/convert/model", R"({"fahrenheit": 1})").status == 200; }, 30s));
  EXPECT_NE(fetch(service->port(), "GET", "/metrics").body.find("\ncelsius_model_available 1\n"), std::string::npos);
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

// Issue 11, defect 2, on both protocols and under load: through a model-server outage the
// native path only ever answers 200 and /readyz stays 200; the model path answers 503
// without waiting for its deadline, then recovers by itself.
TEST_P(model_endpoint_protocols, killing_the_model_server_under_load_leaves_native_and_readiness_untouched) {
  const auto ports = unused_ports(2);
  const std::uint16_t grpc_port = ports[0];
  const std::uint16_t rest_port = ports[1];
  auto model = start_model_server_at(grpc_port, rest_port);
  const auto service = start_service(url(grpc_port, rest_port), {"--model-timeout-ms", "20000"});
  ASSERT_TRUE(wait_until([&] { return model_available(service->port()); }, 60s)) << readyz(service->port()).body;

  std::mutex mutex;
  std::map<unsigned, int> native_statuses, model_statuses, readyz_statuses;
  clock_type::duration slowest_503{};
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
      auto conn = std::make_unique<connection>(service->port(), 60s);
      for (int i = 0; !stop; ++i) {
        const bool to_model = (i + c) % 2 == 0;
        const auto sent = clock_type::now();
        conn->send(request("POST", to_model ? "/convert/model" : "/convert", R"({"fahrenheit": [1, 2, 3]})"));
        const auto res = conn->read_response();
        const auto took = clock_type::now() - sent;
        const unsigned status = res ? res->status : 0;
        {
          std::lock_guard lock(mutex);
          ++(to_model ? model_statuses : native_statuses)[status];
          if (to_model && status == 503) slowest_503 = std::max(slowest_503, took);
        }
        if (to_model && status == 200 && restarted) ++model_ok_after_restart;
        if (!res || !res->keep_alive) conn = std::make_unique<connection>(service->port(), 60s);
      }
    });
  }
  clients.emplace_back([&] {
    while (!stop) {
      const unsigned status = fetch(service->port(), "GET", "/readyz").status;
      {
        std::lock_guard lock(mutex);
        ++readyz_statuses[status];
      }
      std::this_thread::sleep_for(20ms);
    }
  });
  std::this_thread::sleep_for(1s);
  model->signal(SIGKILL);
  model->wait_exit(10s);
  std::this_thread::sleep_for(2s);  // load against a dead model server
  model = start_model_server_at(grpc_port, rest_port);
  restarted = true;
  const bool recovered = wait_until([&] { return model_ok_after_restart >= 20; }, 60s);
  stop = true;
  for (auto& t : clients) t.join();
  clients.clear();

  std::lock_guard lock(mutex);
  EXPECT_TRUE(recovered) << "no recovery after the model server came back";
  ASSERT_EQ(native_statuses.size(), 1u) << "native answers other than 200";
  EXPECT_EQ(native_statuses.begin()->first, 200u);
  EXPECT_GT(native_statuses[200], 100);
  ASSERT_EQ(readyz_statuses.size(), 1u) << "/readyz answered other than 200";
  EXPECT_EQ(readyz_statuses.begin()->first, 200u);
  for (const auto& [status, count] : model_statuses) {
    EXPECT_TRUE(status == 200 || status == 503) << status << " x" << count;
  }
  EXPECT_GT(model_statuses[503], 0);
  // Fast: a refused connection or the open breaker answers at once, never after the 20 s deadline.
  EXPECT_LT(slowest_503, 10s);
  EXPECT_EQ(model->stop(60s), 0);
  EXPECT_EQ(service->stop(), 0);
}

TEST_P(model_endpoint_protocols, a_slow_model_server_gives_504_at_the_deadline) {
  const auto model = start_model_server({"--celsius_reply_delay_ms", "6000"});
  const auto service = start_service(url(grpc_port_of(*model), model->port()), {"--model-timeout-ms", "300"});
  // Status calls are not delayed.
  ASSERT_TRUE(wait_until([&] { return model_available(service->port()); }, 60s)) << readyz(service->port()).body;
  const auto started = clock_type::now();
  const auto res = call(service->port(), "POST", "/convert/model", R"({"fahrenheit": 1})");
  const auto took = clock_type::now() - started;
  EXPECT_EQ(res.status, 504u);
  expect_error(res.body, "model_timeout");
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 3000ms) << "waited for the model server's reply (6 s) instead of the 300 ms deadline";
  EXPECT_EQ(fetch(service->port(), "POST", "/convert", R"({"fahrenheit": 1})").status, 200u);
  EXPECT_EQ(service->stop(), 0);
}

TEST_P(model_endpoint_protocols, malformed_replies_are_502) {
  const auto model = start_model_server({"--celsius_malformed_replies"});
  const auto service = start_service(url(grpc_port_of(*model), model->port()));
  ASSERT_TRUE(wait_until([&] { return model_available(service->port()); }, 60s)) << readyz(service->port()).body;
  const auto res = call(service->port(), "POST", "/convert/model", R"({"fahrenheit": [1, 2]})");
  EXPECT_EQ(res.status, 502u);
  EXPECT_NE(expect_error(res.body, "model_error").find("malformed"), std::string::npos) << res.body;
  EXPECT_EQ(service->stop(), 0);
}

TEST_P(model_endpoint_protocols, model_server_errors_are_502_with_its_message) {
  const auto model = start_model_server();
  const auto service = start_service(url(grpc_port_of(*model), model->port()), {"--model-name", "nope"});
  // The status poll reached the model server: it does not know the name, so never AVAILABLE.
  // GetModelStatus's words for an unknown name (TF Serving's get_model_status_impl.cc).
  ASSERT_TRUE(wait_until(
      [&] {
        return readyz(service->port()).model_reason.find("Could not find any versions of model nope") !=
               std::string::npos;
      },
      60s))
      << readyz(service->port()).body;
  const auto res = call(service->port(), "POST", "/convert/model", R"({"fahrenheit": 1})");
  EXPECT_EQ(res.status, 502u);
  EXPECT_NE(expect_error(res.body, "model_error").find("Servable not found"), std::string::npos) << res.body;
  const auto state = readyz(service->port());
  EXPECT_EQ(state.status, 200u) << state.body;  // the service itself can serve /convert
  EXPECT_FALSE(state.model_available) << state.body;
  EXPECT_NE(state.model_reason.find("nope"), std::string::npos) << state.body;
  EXPECT_EQ(service->stop(), 0);
}

TEST_P(model_endpoint_protocols, shutdown_waits_for_a_model_call_in_flight) {
  const auto model = start_model_server({"--celsius_reply_delay_ms", "2000"});
  const auto service = start_service(url(grpc_port_of(*model), model->port()));
  ASSERT_TRUE(wait_until([&] { return model_available(service->port()); }, 60s)) << readyz(service->port()).body;
  connection conn(service->port(), 60s);
  conn.send(request("POST", "/convert/model", R"({"fahrenheit": 212})"));
  // SIGTERM only once the call is out (not before the request arrived).
  ASSERT_TRUE(wait_until(
      [&] {
        return fetch(service->port(), "GET", "/metrics").body.find("\ncelsius_model_requests_in_flight 1\n") !=
               std::string::npos;
      },
      30s));
  service->signal(SIGTERM);
  const auto res = conn.read_response();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200u) << res->body;
  EXPECT_NE(res->body.find(R"("celsius":100)"), std::string::npos) << res->body;
  EXPECT_EQ(service->wait_exit(60s), 0);
}

INSTANTIATE_TEST_SUITE_P(protocols, model_endpoint_protocols, ::testing::Values("grpc", "rest"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace celsius::test
