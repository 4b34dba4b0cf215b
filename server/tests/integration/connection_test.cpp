// Connection handling: keep-alive, pipelining, many clients, slow clients.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
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
  // Each stalled client gets 408 request_timeout, then its connection is closed.
  for (connection* c : {&stalled, &half_head}) {
    const auto timed_out = c->read_response();
    ASSERT_TRUE(timed_out.has_value());
    EXPECT_EQ(timed_out->status, 408u);
    EXPECT_TRUE(c->closed_by_peer());
  }
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

// Issue 10, item 9: with a 10 s setting the timeout fired after 10-15 s (a watchdog
// ticking every quarter of the smaller timeout), and no 408 was ever written. Now the
// deadline is the timer's own expiry: it fires at its time, late only by the event loop's
// delay (well under 100 ms on an idle loop; this test allows 1 s for a busy CI machine,
// still far below the old error of up to half the setting), and a request that started
// but did not arrive whole gets 408 request_timeout and a close.
TEST(connections, request_timeout_answers_408_on_time) {
  constexpr auto timeout = 3000ms;
  server_process server({"--request-timeout-ms", "3000", "--idle-timeout-ms", "60000"});
  for (const std::string partial :
       {std::string("GET /healthz HTTP/1.1\r\nHo"),  // the head never completes
        std::string("POST /convert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n"
                    "\r\n{\"fahr")}) {  // the body never completes
    connection c(server.port(), 20s);
    const auto sent = std::chrono::steady_clock::now();
    c.send(partial);
    const auto res = c.read_response();
    const auto elapsed = std::chrono::steady_clock::now() - sent;
    ASSERT_TRUE(res.has_value()) << partial;
    EXPECT_EQ(res->status, 408u);
    expect_error(res->body, "request_timeout");
    EXPECT_FALSE(res->keep_alive);
    EXPECT_TRUE(c.closed_by_peer());
    // Never early: the server's clock starts when the first byte arrives, after `sent`.
    EXPECT_GE(elapsed, timeout - 5ms) << partial;
    EXPECT_LE(elapsed, timeout + 1000ms) << partial;
  }
}

TEST(connections, idle_timeout_closes_without_an_answer_on_time) {
  server_process server({"--idle-timeout-ms", "2000", "--request-timeout-ms", "60000"});
  connection c(server.port(), 20s);
  c.send(convert_request(1));
  expect_converted(c.read_response(), 1);
  const auto idle_since = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.closed_by_peer()) << "an idle connection is closed without a 408";
  const auto elapsed = std::chrono::steady_clock::now() - idle_since;
  EXPECT_GE(elapsed, 2000ms - 5ms);
  EXPECT_LE(elapsed, 3000ms);
}

TEST(connections, a_slow_but_steady_request_within_the_timeout_is_served) {
  server_process server({"--request-timeout-ms", "3000"});
  connection c(server.port(), 10s);
  const std::string req = convert_request(212);
  for (std::size_t i = 0; i < req.size(); i += 16) {
    c.send(req.substr(i, 16));
    std::this_thread::sleep_for(20ms);
  }
  expect_converted(c.read_response(), 212);
}

// Issue 11, defect 7: clients that keep connections open never reach new replicas. The
// answer that reaches --keepalive-requests says `Connection: close` (nginx's
// keepalive_requests), so the client opens a new connection.
TEST(connections, keepalive_requests_bounds_the_answers_per_connection) {
  server_process server({"--keepalive-requests", "5"});
  for (int round = 0; round < 2; ++round) {
    connection c(server.port());
    for (int i = 1; i <= 5; ++i) {
      c.send(convert_request(i));
      const auto res = c.read_response();
      expect_converted(res, i);
      EXPECT_EQ(res->keep_alive, i < 5) << i;
    }
    EXPECT_TRUE(c.closed_by_peer());
  }
}

TEST(connections, keepalive_requests_default_is_1000) {
  server_process server;
  connection c(server.port());
  for (int i = 1; i <= 1000; ++i) {
    c.send(request("GET", "/healthz"));
    const auto res = c.read_response();
    ASSERT_TRUE(res.has_value()) << i;
    ASSERT_EQ(res->keep_alive, i < 1000) << i;
  }
  EXPECT_TRUE(c.closed_by_peer());
}

TEST(connections, keepalive_time_bounds_the_age_of_a_connection) {
  server_process server({"--keepalive-time-ms", "1500"});
  connection c(server.port(), 10s);
  c.send(convert_request(1));
  const auto young = c.read_response();
  expect_converted(young, 1);
  EXPECT_TRUE(young->keep_alive);
  std::this_thread::sleep_for(1700ms);
  c.send(convert_request(2));
  const auto old = c.read_response();
  expect_converted(old, 2);
  EXPECT_FALSE(old->keep_alive) << "the first answer after keepalive-time says Connection: close";
  EXPECT_TRUE(c.closed_by_peer());
}

// The effect the limits exist for: a client that reopens closed connections through a
// balancer reaches a replica started after it connected. Each new connection goes to the
// next live replica in turn (as kube-proxy spreads new connections); replica B starts
// while 4 keep-alive clients are busy on A.
std::map<std::string, int> answers_per_replica(const std::vector<std::string>& lifetime_flags) {
  std::vector<std::string> args = {"--threads", "1"};
  args.insert(args.end(), lifetime_flags.begin(), lifetime_flags.end());
  server_process a(args);
  std::unique_ptr<server_process> b;
  std::mutex mutex;
  std::vector<std::uint16_t> replicas = {a.port()};
  std::size_t next = 0;
  std::map<std::string, int> seen;
  std::atomic<int> phase{0};  // 0: only A; 1: B is up; 2: stop
  const auto client = [&] {
    while (phase != 2) {
      std::uint16_t port = 0;
      {
        std::lock_guard lock(mutex);
        port = replicas[next++ % replicas.size()];
      }
      connection c(port);
      for (int i = 0; phase != 2; ++i) {
        c.send(request("GET", "/convert?fahrenheit=" + std::to_string(i)));
        const auto res = c.read_response();
        if (!res) break;
        std::lock_guard lock(mutex);
        if (phase == 1) ++seen[res->header("x-app-id")];
        if (!res->keep_alive) break;
      }
    }
  };
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) clients.emplace_back(client);
  std::this_thread::sleep_for(300ms);
  b = std::make_unique<server_process>(args);
  {
    std::lock_guard lock(mutex);
    replicas.push_back(b->port());
  }
  phase = 1;
  // Until 2,000 answers were counted with both replicas up (bounded: a slow machine).
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  for (;;) {
    {
      std::lock_guard lock(mutex);
      int total = 0;
      for (const auto& [id, n] : seen) total += n;
      if (total >= 2000) break;
    }
    if (std::chrono::steady_clock::now() > give_up) {
      ADD_FAILURE() << "clients too slow";
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  phase = 2;
  for (auto& t : clients) t.join();
  return seen;
}

TEST(connections, bounded_lifetime_lets_a_new_replica_take_load) {
  const auto bounded = answers_per_replica({"--keepalive-requests", "100"});
  ASSERT_EQ(bounded.size(), 2u) << "both replicas answered";
  int total = 0;
  for (const auto& [id, n] : bounded) total += n;
  for (const auto& [id, n] : bounded) {
    EXPECT_GT(n * 5, total) << "each replica served more than a fifth: " << id << " " << n << " of " << total;
  }
  // Without the limits (the defect), the new replica gets nothing from these clients.
  const auto unbounded = answers_per_replica({"--keepalive-requests", "0", "--keepalive-time-ms", "0"});
  EXPECT_EQ(unbounded.size(), 1u);
}

}  // namespace
}  // namespace celsius::test
