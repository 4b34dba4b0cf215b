// Connection handling: keep-alive, pipelining, many clients, slow clients.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <memory>
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

std::string convert_request(int value, std::string_view request_id = {}) {
  const std::string extra = request_id.empty() ? std::string() : "X-Request-Id: " + std::string(request_id) + "\r\n";
  return request("POST", "/convert", R"({"fahrenheit": )" + std::to_string(value) + "}", "application/json", extra);
}

void expect_converted(const std::optional<http_response>& res, int value) {
  ASSERT_TRUE(res.has_value());
  ASSERT_EQ(res->status, 200u) << res->body;
  const auto doc = parse_json(res->body);
  EXPECT_EQ(doc["fahrenheit"].GetDouble(), value);
  EXPECT_EQ(doc["celsius"].GetDouble(), to_celsius(value));
}

TEST(connections, keep_alive_serves_many_requests_on_one_connection) {
  server_process server;
  connection c(server.port());
  for (int i = 0; i < 200; ++i) {
    c.send(convert_request(i));
    expect_converted(c.read_response(), i);
  }
}

TEST(connections, pipelined_requests_are_answered_in_order) {
  server_process server;
  connection c(server.port());
  std::string burst;
  constexpr int n = 64;
  for (int i = 0; i < n; ++i) burst += convert_request(i, "pipe-" + std::to_string(i));
  burst += request("GET", "/healthz", {}, {}, "X-Request-Id: pipe-last\r\n");
  c.send(burst);  // one write: the server finds many requests in one read
  for (int i = 0; i < n; ++i) {
    const auto res = c.read_response();
    expect_converted(res, i);
    EXPECT_EQ(res->header("x-request-id"), "pipe-" + std::to_string(i));
  }
  const auto last = c.read_response();
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->header("x-request-id"), "pipe-last");
}

TEST(connections, hundreds_of_concurrent_connections) {
  server_process server({"--threads", "2"});
  constexpr int n = 256;
  std::vector<std::unique_ptr<connection>> clients;
  for (int i = 0; i < n; ++i) clients.push_back(std::make_unique<connection>(server.port()));
  // All connections are open at once; each sends, then all are read.
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < n; ++i) clients[i]->send(convert_request(i + round));
    for (int i = 0; i < n; ++i) expect_converted(clients[i]->read_response(), i + round);
  }
}

TEST(connections, concurrent_clients_from_many_threads) {
  server_process server({"--threads", "2"});
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      connection c(server.port());
      for (int i = 0; i < 100; ++i) {
        c.send(convert_request(t * 1000 + i));
        const auto res = c.read_response();
        if (res && res->status == 200 && parse_json(res->body)["celsius"].GetDouble() == to_celsius(t * 1000 + i)) {
          ++ok;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 1600);
}

TEST(connections, http10_closes_unless_keep_alive) {
  server_process server;
  connection c(server.port());
  c.send("GET /healthz HTTP/1.0\r\n\r\n");
  const auto res = c.read_response();
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 200u);
  EXPECT_TRUE(c.closed_by_peer());

  connection k(server.port());
  k.send("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  ASSERT_TRUE(k.read_response().has_value());
  k.send("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  ASSERT_TRUE(k.read_response().has_value());
}

TEST(connections, connection_close_is_honoured) {
  server_process server;
  connection c(server.port());
  c.send(request("GET", "/healthz", {}, {}, "Connection: close\r\n"));
  const auto res = c.read_response();
  ASSERT_TRUE(res.has_value());
  EXPECT_FALSE(res->keep_alive);
  EXPECT_TRUE(c.closed_by_peer());
}

TEST(connections, a_client_stalling_mid_request_is_closed_without_affecting_others) {
  server_process server({"--threads", "1", "--request-timeout-ms", "300", "--idle-timeout-ms", "60000"});
  connection stalled(server.port(), 5s);
  stalled.send(
      "POST /convert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"fahr");
  connection half_head(server.port(), 5s);
  half_head.send("GET /healthz HTTP/1.1\r\nHo");
  // Meanwhile, on the same single event loop, other clients are served promptly.
  connection other(server.port());
  for (int i = 0; i < 20; ++i) {
    other.send(convert_request(i));
    expect_converted(other.read_response(), i);
  }
  EXPECT_TRUE(stalled.closed_by_peer());
  EXPECT_TRUE(half_head.closed_by_peer());
  other.send(convert_request(7));
  expect_converted(other.read_response(), 7);
}

TEST(connections, idle_keep_alive_connections_time_out) {
  server_process server({"--idle-timeout-ms", "200"});
  connection c(server.port(), 5s);
  c.send(convert_request(1));
  expect_converted(c.read_response(), 1);
  EXPECT_TRUE(c.closed_by_peer());
}

TEST(connections, a_client_that_never_reads_does_not_block_others) {
  server_process server({"--threads", "1", "--request-timeout-ms", "500"});
  // Floods pipelined requests without reading any answer: the server's writes back up.
  connection hog(server.port(), 5s);
  int rcvbuf = 4096;
  setsockopt(hog.fd(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  std::string burst;
  for (int i = 0; i < 2000; ++i) burst += request("GET", "/openapi.json");
  std::thread writer([&] {
    try {
      hog.send(burst);
    } catch (const std::exception&) {
    }
  });
  connection other(server.port());
  for (int i = 0; i < 20; ++i) {
    other.send(convert_request(i));
    expect_converted(other.read_response(), i);
  }
  writer.join();
}

}  // namespace
}  // namespace celsius::test
