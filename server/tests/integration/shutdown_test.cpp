// SIGTERM/SIGINT: stop accepting, finish requests in flight, exit 0.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "convert.hpp"
#include "http_client.hpp"
#include "json_helpers.hpp"
#include "server_process.hpp"

namespace celsius::test {
namespace {

using namespace std::chrono_literals;

TEST(shutdown, sigterm_with_idle_connections_exits_zero_promptly) {
  server_process server;
  connection idle(server.port(), 5s);
  idle.send(request("GET", "/healthz"));
  ASSERT_TRUE(idle.read_response().has_value());
  EXPECT_EQ(server.stop(5s), 0);
  EXPECT_TRUE(idle.closed_by_peer());
  EXPECT_TRUE(server.wait_for_log("\"msg\":\"stopped\",\"drained\":true", 1s));
}

TEST(shutdown, sigint_also_stops_gracefully) {
  server_process server;
  server.signal(SIGINT);
  EXPECT_EQ(server.wait_exit(5s), 0);
}

TEST(shutdown, a_request_in_flight_is_finished_before_exit) {
  server_process server({"--shutdown-grace-ms", "10000"});
  connection c(server.port(), 10s);
  const std::string body = R"({"fahrenheit": 212})";
  // Head and half the body arrive, then the server is told to stop.
  c.send("POST /convert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body.substr(0, 8));
  std::this_thread::sleep_for(100ms);  // let the server read the partial request
  server.signal(SIGTERM);
  ASSERT_TRUE(server.wait_for_log("shutting down", 5s));
  // New connections are refused once the listener is closed.
  bool refused = false;
  for (int i = 0; i < 50 && !refused; ++i) {
    try {
      connection late(server.port(), 1s);
      late.send(request("GET", "/healthz"));
      refused = !late.read_response().has_value();
    } catch (const std::exception&) {
      refused = true;
    }
    if (!refused) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(refused);
  EXPECT_FALSE(server.wait_exit(200ms).has_value()) << "exited with a request in flight";
  c.send(body.substr(8));
  const auto res = c.read_response();
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 200u);
  EXPECT_FALSE(res->keep_alive) << "a stopping server closes after the answer";
  EXPECT_EQ(parse_json(res->body)["celsius"].GetDouble(), 100.0);
  EXPECT_EQ(server.wait_exit(5s), 0);
}

TEST(shutdown, grace_period_bounds_the_wait_and_still_exits_zero) {
  server_process server({"--shutdown-grace-ms", "300", "--request-timeout-ms", "60000"});
  connection stuck(server.port(), 10s);
  stuck.send("POST /convert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{");
  std::this_thread::sleep_for(100ms);
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait_exit(10s), 0);
  EXPECT_TRUE(server.wait_for_log("grace period expired", 1s));
}

TEST(shutdown, under_load_every_answer_is_complete_and_correct) {
  server_process server({"--threads", "2"});
  std::atomic<bool> go{true};
  std::atomic<int> answered{0}, wrong{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&, t] {
      while (go) {
        try {
          connection c(server.port(), 5s);
          for (int i = 0; go && i < 1000; ++i) {
            const int value = t * 10000 + i;
            c.send(request("POST", "/convert", R"({"fahrenheit": )" + std::to_string(value) + "}"));
            const auto res = c.read_response();
            if (!res) break;  // closed between requests: the client would retry elsewhere
            if (res->status != 200 || parse_json(res->body)["celsius"].GetDouble() != to_celsius(value)) ++wrong;
            ++answered;
            if (!res->keep_alive) break;
          }
        } catch (const std::exception&) {
          // connect refused after the listener closed, or send on a closed socket
        }
      }
    });
  }
  std::this_thread::sleep_for(300ms);
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait_exit(10s), 0);
  go = false;
  for (auto& c : clients) c.join();
  EXPECT_GT(answered.load(), 100);
  EXPECT_EQ(wrong.load(), 0);
}

}  // namespace
}  // namespace celsius::test
