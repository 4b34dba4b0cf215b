// The gRPC model client against the real local model server (real TensorFlow runtime).
#include <gtest/gtest.h>

#include <condition_variable>
#include <cstring>
#include <future>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "convert.hpp"
#include "grpc_model_client.hpp"
#include "model_server.hpp"
#include "scripted_peers.hpp"
#include "tensorflow_serving.grpc.pb.h"

namespace celsius::test {
namespace {

using namespace std::chrono_literals;

predict_result predict_sync(model_client& client, const std::vector<double>& values,
                            std::chrono::milliseconds deadline = std::chrono::seconds(30)) {
  std::promise<predict_result> done;
  auto future = done.get_future();
  client.predict(values, model_client::clock::now() + deadline,
                 [&done](predict_result r) { done.set_value(std::move(r)); });
  if (future.wait_for(deadline + 30s) != std::future_status::ready) throw std::runtime_error("predict never completed");
  return future.get();
}

model_status status_sync(model_client& client) {
  std::promise<model_status> done;
  auto future = done.get_future();
  client.status([&done](model_status s) { done.set_value(std::move(s)); });
  if (future.wait_for(30s) != std::future_status::ready) throw std::runtime_error("status never completed");
  return future.get();
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// gRPC 1.51 (Debian) runs callback-API completions on a completion queue shared by the
// channels that used it, and tears it down with the last of them; a channel made while
// that teardown runs makes gRPC's own poller thread free the queue twice (seen under ASan,
// entirely inside libgrpc). The service keeps one channel for its whole life, so it never
// meets this. The tests make several clients, so none is ever destroyed: each is kept, still
// reachable (no leak report), until the process exits; and one that has made a call exists
// before the first test. (A CI run under ASan once hung in this area with clients being
// destroyed between calls.) The client now uses its own completion queue rather than the
// callback API, so it should no longer meet this; the precaution costs nothing and stays.
model_client& kept(std::unique_ptr<model_client> client) {
  static auto* const clients = new std::vector<std::unique_ptr<model_client>>();
  clients->push_back(std::move(client));
  return *clients->back();
}

class keep_callback_queue : public ::testing::Environment {
 public:
  void SetUp() override {
    grpc_model_options options;
    options.target = "127.0.0.1:9";  // nothing listens there: the call only has to be made
    options.timeout = std::chrono::milliseconds(200);
    auto done = std::make_shared<std::promise<void>>();
    kept(make_grpc_model_client(options)).status([done](model_status) { done->set_value(); });
    ASSERT_EQ(done->get_future().wait_for(30s), std::future_status::ready) << "gRPC never called back";
  }
};
const auto* const keep_callback_queue_registered = ::testing::AddGlobalTestEnvironment(new keep_callback_queue);

class grpc_client : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (project_python().empty()) return;
    server_ = start_model_server().release();
  }
  static void TearDownTestSuite() {
    if (server_ != nullptr) EXPECT_EQ(server_->stop(std::chrono::seconds(60)), 0);
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { CELSIUS_REQUIRE_PYTHON(); }
  static model_client& client(grpc_model_options options = {}) {
    if (options.target.empty()) options.target = "127.0.0.1:" + std::to_string(grpc_port_of(*server_));
    options.timeout = std::max<std::chrono::milliseconds>(options.timeout, 30s);  // not what these tests test
    return kept(make_grpc_model_client(options));
  }
  static inline server_process* server_ = nullptr;
};

TEST_F(grpc_client, predictions_are_bit_identical_to_the_native_path) {
  std::vector<double> values = {32, 212, 98.6, -459.67, -0.0, 5e-324, 1e300, 0.1};
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> temps(-459.67, 1000);
  for (int i = 0; i < 10000; ++i) values.push_back(temps(rng));
  const auto result = predict_sync(client(), values);
  ASSERT_TRUE(std::holds_alternative<model_prediction>(result)) << std::get<model_error>(result).message;
  const auto& prediction = std::get<model_prediction>(result);
  EXPECT_EQ(prediction.version, 1);
  ASSERT_EQ(prediction.celsius.size(), values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    ASSERT_TRUE(same_bits(prediction.celsius[i], to_celsius(values[i]))) << "f=" << values[i];
  }
}

TEST_F(grpc_client, status_reports_the_available_version) {
  const auto status = status_sync(client());
  EXPECT_TRUE(status.available) << status.detail;
  EXPECT_EQ(status.version, 1);
}

TEST_F(grpc_client, model_server_errors_carry_its_message) {
  grpc_model_options unknown;
  unknown.model_name = "nope";
  const auto result = predict_sync(client(unknown), {1.0});
  ASSERT_TRUE(std::holds_alternative<model_error>(result));
  EXPECT_EQ(std::get<model_error>(result).kind, model_failure::error);
  EXPECT_NE(std::get<model_error>(result).message.find("Servable not found"), std::string::npos);
  const auto status = status_sync(client(unknown));
  EXPECT_FALSE(status.available);
  EXPECT_NE(status.detail.find("Could not find any versions of model nope"), std::string::npos) << status.detail;

  grpc_model_options wrong_version;
  wrong_version.model_version = 2;
  const auto versioned = predict_sync(client(wrong_version), {1.0});
  ASSERT_TRUE(std::holds_alternative<model_error>(versioned));
  EXPECT_EQ(std::get<model_error>(versioned).kind, model_failure::error);
}

TEST(grpc_client_faults, a_dead_model_server_is_unavailable_without_hanging) {
  grpc_model_options options;
  options.target = "127.0.0.1:" + std::to_string(unused_port());
  options.timeout = 500ms;
  const auto result = predict_sync(kept(make_grpc_model_client(options)), {1.0}, 500ms);
  ASSERT_TRUE(std::holds_alternative<model_error>(result));
  const auto kind = std::get<model_error>(result).kind;
  EXPECT_TRUE(kind == model_failure::unavailable || kind == model_failure::timeout);
  EXPECT_FALSE(status_sync(kept(make_grpc_model_client(options))).available);
}

// gRPC shares subchannels (connections and their reconnect backoff) between the channels of a
// process that have the same address and arguments, unless a channel asks for its own pool
// (GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, grpc/impl/codegen/grpc_types.h in gRPC 1.51). A client must
// not inherit another client's failed connection: here a client fails against a dead port,
// then a server starts on that port and a new client's first call must be answered (with a
// shared pool it failed at once, "Connection refused", while the old subchannel waited out its
// backoff; it made the tests in this file fail now and then, when a new scripted server got
// the port of one that had stopped).
TEST(grpc_client_faults, a_new_client_does_not_inherit_another_clients_failed_connection) {
  const auto port = unused_port();
  grpc_model_options options;
  options.target = "127.0.0.1:" + std::to_string(port);
  options.timeout = 30s;
  const auto dead = predict_sync(kept(make_grpc_model_client(options)), {1.0}, 2s);
  ASSERT_TRUE(std::holds_alternative<model_error>(dead)) << "answered by nothing";
  scripted_grpc_model_server::options how;
  how.port = port;
  scripted_grpc_model_server server(how);
  const auto result = predict_sync(kept(make_grpc_model_client(options)), {212.0});
  ASSERT_TRUE(std::holds_alternative<model_prediction>(result)) << std::get<model_error>(result).message;
  EXPECT_EQ(std::get<model_prediction>(result).celsius, std::vector<double>{100});
}

TEST(grpc_client_faults, a_slow_model_server_times_out) {
  CELSIUS_REQUIRE_PYTHON();
  const auto slow = start_model_server({"--celsius_reply_delay_ms", "5000"});
  grpc_model_options options;
  options.target = "127.0.0.1:" + std::to_string(grpc_port_of(*slow));
  options.timeout = 200ms;
  const auto result = predict_sync(kept(make_grpc_model_client(options)), {1.0}, 200ms);
  ASSERT_TRUE(std::holds_alternative<model_error>(result));
  EXPECT_EQ(std::get<model_error>(result).kind, model_failure::timeout);
  EXPECT_EQ(slow->stop(std::chrono::seconds(60)), 0);
}

// ---- Replies from a misbehaving peer: a real gRPC server in this process (same protos).

namespace tfs = tensorflow::serving;
using reply_writer = std::function<void(tfs::PredictResponse&)>;

// A reply with outputs["celsius"] shaped by `fill`, the rest as TF Serving writes it.
reply_writer celsius_tensor(std::function<void(tensorflow::TensorProto&)> fill) {
  return [fill](tfs::PredictResponse& response) {
    tensorflow::TensorProto& t = (*response.mutable_outputs())["celsius"];
    t.set_dtype(tensorflow::DT_DOUBLE);
    fill(t);
    response.mutable_model_spec()->set_name("f2c");
    response.mutable_model_spec()->mutable_version()->set_value(1);
  };
}

void shape(tensorflow::TensorProto& t, std::initializer_list<std::int64_t> dims) {
  for (const auto d : dims) t.mutable_tensor_shape()->add_dim()->set_size(d);
}

std::string content_of(std::initializer_list<double> values) {
  std::string bytes(values.size() * sizeof(double), '\0');
  std::memcpy(bytes.data(), std::data(values), bytes.size());
  return bytes;
}

// The client's answer to `request` from a peer that replies with `write`.
predict_result answer_from(const reply_writer& write, const std::vector<double>& request) {
  scripted_grpc_model_server::options how;
  how.predict = [write](const tfs::PredictRequest&, tfs::PredictResponse& response) {
    write(response);
    return grpc::Status::OK;
  };
  scripted_grpc_model_server peer(how);
  grpc_model_options options;
  options.target = "127.0.0.1:" + std::to_string(peer.port());
  options.timeout = 30s;
  return predict_sync(kept(make_grpc_model_client(options)), request);
}

// A model server that ends a call itself (CANCELLED, as a shutting-down gRPC server does with
// calls it has not answered) is an outage, like UNAVAILABLE: 503 and counted by the breaker.
TEST(grpc_client_faults, a_call_the_model_server_cancels_is_unavailable) {
  scripted_grpc_model_server::options how;
  how.predict = [](const tfs::PredictRequest&, tfs::PredictResponse&) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "Server shutdown");
  };
  scripted_grpc_model_server peer(how);
  grpc_model_options options;
  options.target = "127.0.0.1:" + std::to_string(peer.port());
  options.timeout = 30s;
  const auto result = predict_sync(kept(make_grpc_model_client(options)), {32});
  ASSERT_TRUE(std::holds_alternative<model_error>(result));
  EXPECT_EQ(std::get<model_error>(result).kind, model_failure::unavailable) << std::get<model_error>(result).message;
}

// Issue 10, item 1: a reply with the wrong element count was accepted and broadcast.
TEST(grpc_client_replies, one_value_of_shape_1_for_three_inputs_is_malformed) {
  const auto result = answer_from(celsius_tensor([](tensorflow::TensorProto& t) {
                                    shape(t, {1});
                                    t.add_double_val(42);
                                  }),
                                  {32, 212, -40});
  ASSERT_TRUE(std::holds_alternative<model_error>(result)) << "accepted: a [1] reply for 3 inputs";
  EXPECT_EQ(std::get<model_error>(result).kind, model_failure::malformed);
  EXPECT_NE(std::get<model_error>(result).message.find("shape [1] for 3 inputs"), std::string::npos)
      << std::get<model_error>(result).message;
}

TEST(grpc_client_replies, replies_that_do_not_fit_the_request_are_malformed) {
  const std::vector<double> request = {32, 212, -40};
  const std::vector<std::pair<std::string, reply_writer>> cases = {
      {"no outputs", [](tfs::PredictResponse&) {}},
      {"another output name",
       [](tfs::PredictResponse& r) {
         auto& t = (*r.mutable_outputs())["fahrenheit"];
         t.set_dtype(tensorflow::DT_DOUBLE);
         shape(t, {3});
         for (double v : {0.0, 100.0, -40.0}) t.add_double_val(v);
       }},
      {"DT_FLOAT with float_val", celsius_tensor([](tensorflow::TensorProto& t) {
         t.set_dtype(tensorflow::DT_FLOAT);
         shape(t, {3});
         for (float v : {0.0F, 100.0F, -40.0F}) t.add_float_val(v);
       })},
      {"DT_DOUBLE with float_val", celsius_tensor([](tensorflow::TensorProto& t) {
         shape(t, {3});
         for (float v : {0.0F, 100.0F, -40.0F}) t.add_float_val(v);
       })},
      {"DT_INVALID", celsius_tensor([](tensorflow::TensorProto& t) {
         t.set_dtype(tensorflow::DT_INVALID);
         shape(t, {3});
         for (double v : {0.0, 100.0, -40.0}) t.add_double_val(v);
       })},
      {"no shape", celsius_tensor([](tensorflow::TensorProto& t) {
         for (double v : {0.0, 100.0, -40.0}) t.add_double_val(v);
       })},
      {"unknown rank", celsius_tensor([](tensorflow::TensorProto& t) {
         t.mutable_tensor_shape()->set_unknown_rank(true);
         for (double v : {0.0, 100.0, -40.0}) t.add_double_val(v);
       })},
      {"shape [3,1]", celsius_tensor([](tensorflow::TensorProto& t) {
         shape(t, {3, 1});
         for (double v : {0.0, 100.0, -40.0}) t.add_double_val(v);
       })},
      {"shape [1,3]", celsius_tensor([](tensorflow::TensorProto& t) {
         shape(t, {1, 3});
         for (double v : {0.0, 100.0, -40.0}) t.add_double_val(v);
       })},
      {"shape [] (a scalar)", celsius_tensor([](tensorflow::TensorProto& t) { t.add_double_val(0); })},
      {"shape [2], 2 values", celsius_tensor([](tensorflow::TensorProto& t) {
         shape(t, {2});
         for (double v : {0.0, 100.0}) t.add_double_val(v);
       })},
      {"shape [4], 4 values", celsius_tensor([](tensorflow::TensorProto& t) {
         shape(t, {4});
         for (double v : {0.0, 100.0, -40.0, 1.0}) t.add_double_val(v);
       })},
      {"shape [3], 2 values", celsius_tensor([](tensorflow::TensorProto& t) {
         shape(t, {3});
         for (double v : {0.0, 100.0}) t.add_double_val(v);
       })},
      {"shape [3], 4 values", celsius_tensor([](tensorflow::TensorProto& t) {
         shape(t, {3});
         for (double v : {0.0, 100.0, -40.0, 1.0}) t.add_double_val(v);
       })},
      {"shape [3], no values", celsius_tensor([](tensorflow::TensorProto& t) { shape(t, {3}); })},
      {"shape [-3]", celsius_tensor([](tensorflow::TensorProto& t) {
         shape(t, {-3});
         for (double v : {0.0, 100.0, -40.0}) t.add_double_val(v);
       })},
      {"tensor_content of 23 bytes", celsius_tensor([](tensorflow::TensorProto& t) {
         shape(t, {3});
         t.set_tensor_content(content_of({0.0, 100.0, -40.0}).substr(1));
       })},
      {"tensor_content of 2 values", celsius_tensor([](tensorflow::TensorProto& t) {
         shape(t, {3});
         t.set_tensor_content(content_of({0.0, 100.0}));
       })},
      {"tensor_content of 4 values", celsius_tensor([](tensorflow::TensorProto& t) {
         shape(t, {3});
         t.set_tensor_content(content_of({0.0, 100.0, -40.0, 1.0}));
       })},
      {"tensor_content and double_val", celsius_tensor([](tensorflow::TensorProto& t) {
         shape(t, {3});
         t.set_tensor_content(content_of({0.0, 100.0, -40.0}));
         for (double v : {0.0, 100.0, -40.0}) t.add_double_val(v);
       })},
      {"tensor_content of 1 value, shape [1]", celsius_tensor([](tensorflow::TensorProto& t) {
         shape(t, {1});
         t.set_tensor_content(content_of({42}));
       })},
      {"another model",
       [](tfs::PredictResponse& r) {
         celsius_tensor([](tensorflow::TensorProto& t) {
           shape(t, {3});
           for (double v : {0.0, 100.0, -40.0}) t.add_double_val(v);
         })(r);
         r.mutable_model_spec()->set_name("c2f");
       }},
  };
  for (const auto& [name, write] : cases) {
    const auto result = answer_from(write, request);
    ASSERT_TRUE(std::holds_alternative<model_error>(result)) << name << ": accepted";
    EXPECT_EQ(std::get<model_error>(result).kind, model_failure::malformed)
        << name << ": " << std::get<model_error>(result).message;
    EXPECT_FALSE(std::get<model_error>(result).message.empty()) << name;
  }
}

TEST(grpc_client_replies, every_valid_encoding_is_read_exactly) {
  const std::vector<double> request = {32, 212, -40};
  const std::vector<double> expected = {0, 100, -40};
  const std::vector<std::pair<std::string, reply_writer>> cases = {
      {"double_val", celsius_tensor([](tensorflow::TensorProto& t) {
         shape(t, {3});
         for (double v : {0.0, 100.0, -40.0}) t.add_double_val(v);
       })},
      {"tensor_content", celsius_tensor([](tensorflow::TensorProto& t) {
         shape(t, {3});
         t.set_tensor_content(content_of({0.0, 100.0, -40.0}));
       })},
      {"no model_spec",
       [](tfs::PredictResponse& r) {
         auto& t = (*r.mutable_outputs())["celsius"];
         t.set_dtype(tensorflow::DT_DOUBLE);
         shape(t, {3});
         for (double v : {0.0, 100.0, -40.0}) t.add_double_val(v);
       }},
  };
  for (const auto& [name, write] : cases) {
    const auto result = answer_from(write, request);
    ASSERT_TRUE(std::holds_alternative<model_prediction>(result))
        << name << ": " << std::get<model_error>(result).message;
    EXPECT_EQ(std::get<model_prediction>(result).celsius, expected) << name;
  }
  // One value for shape [n] is TensorFlow's broadcast (tf.make_tensor_proto(100.0, shape=[3])).
  const auto broadcast = answer_from(celsius_tensor([](tensorflow::TensorProto& t) {
                                       shape(t, {3});
                                       t.add_double_val(100);
                                     }),
                                     {212, 212, 212});
  ASSERT_TRUE(std::holds_alternative<model_prediction>(broadcast)) << std::get<model_error>(broadcast).message;
  EXPECT_EQ(std::get<model_prediction>(broadcast).celsius, std::vector<double>(3, 100.0));
}

// ---- Connecting: a model server that accepts slowly, and load balancing over DNS.

TEST(grpc_client_connecting, a_model_server_that_accepts_slowly_is_waited_for_within_the_deadline) {
  scripted_grpc_model_server peer;
  const delayed_accept_proxy slow(peer.port(), 1500ms);
  grpc_model_options options;
  options.target = "127.0.0.1:" + std::to_string(slow.port());
  options.timeout = 30s;
  const auto started = std::chrono::steady_clock::now();
  const auto result = predict_sync(kept(make_grpc_model_client(options)), {212});
  ASSERT_TRUE(std::holds_alternative<model_prediction>(result)) << std::get<model_error>(result).message;
  EXPECT_EQ(std::get<model_prediction>(result).celsius, std::vector<double>{100});
  EXPECT_GE(std::chrono::steady_clock::now() - started, 1400ms) << "the connection was not delayed";
}

// Two peers on the same port of 127.0.0.1 and 127.0.0.2 (like two pods behind one
// headless Service name); retries while another process holds the port on either.
std::pair<std::unique_ptr<scripted_grpc_model_server>, std::unique_ptr<scripted_grpc_model_server>> two_peers(
    std::chrono::milliseconds max_connection_age = {}) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    try {
      scripted_grpc_model_server::options first;
      first.host = "127.0.0.2";
      first.max_connection_age = max_connection_age;
      auto a = std::make_unique<scripted_grpc_model_server>(first);
      scripted_grpc_model_server::options second = first;
      second.host = "127.0.0.1";
      second.port = a->port();
      return {std::move(a), std::make_unique<scripted_grpc_model_server>(second)};
    } catch (const std::runtime_error&) {
    }
  }
  throw std::runtime_error("no port free on both 127.0.0.1 and 127.0.0.2");
}

TEST(grpc_client_balancing, calls_go_round_robin_over_every_address_of_the_name) {
  auto [a, b] = two_peers();
  const test_dns_server dns({"127.0.0.2", "127.0.0.1"});
  grpc_model_options options;
  options.target = "dns://127.0.0.1:" + std::to_string(dns.port()) + "/model-server.test:" + std::to_string(a->port());
  options.timeout = 30s;
  model_client& client = kept(make_grpc_model_client(options));
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  int calls = 0;
  while ((a->predict_calls() < 10 || b->predict_calls() < 10) && std::chrono::steady_clock::now() < deadline) {
    const auto result = predict_sync(client, {32});
    ASSERT_TRUE(std::holds_alternative<model_prediction>(result)) << std::get<model_error>(result).message;
    ++calls;
  }
  EXPECT_GE(a->predict_calls(), 10u) << calls << " calls";
  EXPECT_GE(b->predict_calls(), 10u) << calls << " calls";
  EXPECT_GT(dns.queries(), 0u);
}

TEST(grpc_client_balancing, a_new_address_is_used_once_the_server_ends_old_connections) {
  // A model server that limits connection age (TF Serving: --grpc_channel_arguments=
  // grpc.max_connection_age_ms=...): when it ends the connection, the client resolves the
  // name again and finds the pod that was added meanwhile.
  auto [added, first] = two_peers(1000ms);
  test_dns_server dns({"127.0.0.1"});
  grpc_model_options options;
  options.target =
      "dns://127.0.0.1:" + std::to_string(dns.port()) + "/model-server.test:" + std::to_string(first->port());
  options.timeout = 30s;
  model_client& client = kept(make_grpc_model_client(options));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(std::holds_alternative<model_prediction>(predict_sync(client, {32})));
  EXPECT_EQ(added->predict_calls(), 0u) << "not in DNS yet";
  dns.set_addresses({"127.0.0.1", "127.0.0.2"});
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (added->predict_calls() < 5 && std::chrono::steady_clock::now() < deadline) {
    const auto result = predict_sync(client, {32});
    ASSERT_TRUE(std::holds_alternative<model_prediction>(result)) << std::get<model_error>(result).message;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GE(added->predict_calls(), 5u) << "the added address never got calls";
}

TEST(grpc_client_connection_age, no_call_is_lost_when_the_server_ends_connections_under_load) {
  // The chart's model server ends each connection after 30 s (grpc.max_connection_age_ms): it
  // sends GOAWAY, and a call the client starts on that connection before the GOAWAY reaches it
  // is refused without being processed (RFC 9113 section 6.8; gRPC: "unprocessed"). gRPC retries
  // such a call transparently on a new connection, in its retry filter; with
  // grpc.enable_retries=0 the call failed with UNAVAILABLE (a 503 of /convert/model, seen once
  // in 9,482 requests on the cluster). Here connections end every 50 ms while 32 calls are in
  // flight at all times, for 3 s: about 60 connection ends, every call must be answered.
  scripted_grpc_model_server::options how;
  how.max_connection_age = 50ms;
  scripted_grpc_model_server server(how);
  grpc_model_options options;
  options.target = "127.0.0.1:" + std::to_string(server.port());
  options.timeout = 30s;
  model_client& client = kept(make_grpc_model_client(options));
  ASSERT_TRUE(std::holds_alternative<model_prediction>(predict_sync(client, {32})));

  struct load {
    std::mutex mutex;
    std::condition_variable cv;
    int in_flight = 0, answered = 0, failed = 0;
    std::string first_failure;
  } state;
  const std::vector<double> values{212};
  const auto until = std::chrono::steady_clock::now() + 3s;
  std::unique_lock lock(state.mutex);
  while (std::chrono::steady_clock::now() < until) {
    state.cv.wait(lock, [&] { return state.in_flight < 32; });
    ++state.in_flight;
    lock.unlock();
    client.predict(values, model_client::clock::now() + 30s, [&state](predict_result r) {
      std::lock_guard guard(state.mutex);
      --state.in_flight;
      if (std::holds_alternative<model_prediction>(r) &&
          std::get<model_prediction>(r).celsius == std::vector<double>{100}) {
        ++state.answered;
      } else if (state.failed++ == 0) {
        state.first_failure =
            std::holds_alternative<model_error>(r) ? std::get<model_error>(r).message : "a wrong answer";
      }
      state.cv.notify_all();
    });
    lock.lock();
  }
  ASSERT_TRUE(state.cv.wait_for(lock, 90s, [&] { return state.in_flight == 0; })) << "calls never completed";
  EXPECT_EQ(state.failed, 0) << state.failed << " of " << state.answered + state.failed
                             << " calls failed; the first: " << state.first_failure;
  EXPECT_GT(state.answered, 100);
}

}  // namespace
}  // namespace celsius::test
