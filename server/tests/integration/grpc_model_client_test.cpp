// The gRPC model client against the real local model server (real TensorFlow runtime).
#include <gtest/gtest.h>

#include <cstring>
#include <future>
#include <random>

#include "convert.hpp"
#include "grpc_model_client.hpp"
#include "model_server.hpp"

namespace celsius::test {
namespace {

using namespace std::chrono_literals;

predict_result predict_sync(model_client& client, const std::vector<double>& values) {
  std::promise<predict_result> done;
  auto future = done.get_future();
  client.predict(values, [&done](predict_result r) { done.set_value(std::move(r)); });
  if (future.wait_for(30s) != std::future_status::ready) throw std::runtime_error("predict never completed");
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
// destroyed between calls.)
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
  const auto result = predict_sync(kept(make_grpc_model_client(options)), {1.0});
  ASSERT_TRUE(std::holds_alternative<model_error>(result));
  const auto kind = std::get<model_error>(result).kind;
  EXPECT_TRUE(kind == model_failure::unavailable || kind == model_failure::timeout);
  EXPECT_FALSE(status_sync(kept(make_grpc_model_client(options))).available);
}

TEST(grpc_client_faults, a_slow_model_server_times_out) {
  CELSIUS_REQUIRE_PYTHON();
  const auto slow = start_model_server({"--celsius_reply_delay_ms", "1500"});
  grpc_model_options options;
  options.target = "127.0.0.1:" + std::to_string(grpc_port_of(*slow));
  options.timeout = 200ms;
  const auto result = predict_sync(kept(make_grpc_model_client(options)), {1.0});
  ASSERT_TRUE(std::holds_alternative<model_error>(result));
  EXPECT_EQ(std::get<model_error>(result).kind, model_failure::timeout);
  EXPECT_EQ(slow->stop(std::chrono::seconds(60)), 0);
}

}  // namespace
}  // namespace celsius::test
