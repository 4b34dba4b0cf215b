#pragma once

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp needs std::exchange

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <unordered_set>

#include "app.hpp"
#include "metrics.hpp"
#include "request_id.hpp"

namespace celsius {

// Every async operation uses the concrete io_context executor: the default type-erased
// any_io_executor costs a heap-free but measurable dispatch on every operation.
using executor = boost::asio::io_context::executor_type;
using tcp_socket = boost::asio::basic_stream_socket<boost::asio::ip::tcp, executor>;
using steady_timer = boost::asio::basic_waitable_timer<std::chrono::steady_clock,
                                                       boost::asio::wait_traits<std::chrono::steady_clock>, executor>;
template <typename T>
using task = boost::asio::awaitable<T, executor>;
inline constexpr boost::asio::use_awaitable_t<executor> use_task;

class http_session;

// What one event-loop thread owns. Touched only from that thread.
struct worker_state {
  metrics_shard& metrics;
  request_id_generator ids;
  std::unordered_set<http_session*> sessions;
  bool stopping = false;
};

// One client connection: reads requests in order (pipelined ones included), answers each,
// and closes on errors, timeouts, `Connection: close` or shutdown.
class http_session : public std::enable_shared_from_this<http_session> {
 public:
  http_session(worker_state& worker, const app& application, tcp_socket socket);
  ~http_session();
  http_session(const http_session&) = delete;
  http_session& operator=(const http_session&) = delete;

  task<void> run();

  // Shutdown began: a connection waiting for its next request, with no byte of it
  // received, is closed now; one with a request under way finishes it first.
  void on_shutdown();

 private:
  using request = boost::beast::http::request<boost::beast::http::string_body>;
  struct request_meta {
    std::string_view method;
    std::string_view target;
    std::string request_id;
    std::size_t bytes_in = 0;
    unsigned version = 11;
  };

  task<bool> respond(request& req);
  task<response> call_model(convert_input input);
  task<void> reject(const request& head, boost::beast::error_code ec);
  task<bool> write(const response& res, const request_meta& meta, bool keep_alive,
                   std::chrono::steady_clock::time_point started);
  task<void> drain();
  std::string request_id_for(const request& req);

  // Timeouts: operations only move a deadline (a clock read and a store); a timer per
  // connection wakes a few times per timeout period and closes the socket once the
  // deadline has passed, which fails the pending read or write.
  void set_deadline(std::chrono::milliseconds timeout);
  void arm_watchdog();

  worker_state& worker_;
  const app& app_;
  tcp_socket socket_;
  steady_timer watchdog_;
  std::chrono::steady_clock::time_point deadline_;
  std::chrono::milliseconds watchdog_period_;
  boost::beast::flat_buffer buffer_;
  std::string out_;    // serialized response, reused across requests
  bool idle_ = false;  // waiting for the first byte of the next request
  bool closed_ = false;
};

// Starts serving a freshly accepted connection on its worker's loop.
void spawn_session(worker_state& worker, const app& application, tcp_socket socket);

}  // namespace celsius
