#pragma once

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp needs std::exchange

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>

#include "app.hpp"
#include "errors.hpp"
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
  bool stopping = false;                // SIGTERM/SIGINT: every answer says `Connection: close`
  bool drain_over = false;              // the drain window has passed: idle connections are closed
  steady_timer* drain_timer = nullptr;  // cancelled when the last connection closes while stopping
};

// One client connection: reads requests in order (pipelined ones included), answers each,
// and closes on errors, timeouts, `Connection: close`, the keep-alive limits or shutdown.
//
// Deadlines (all from config): waiting for a request's first byte, --idle-timeout-ms; from
// that byte until the request is complete, --request-timeout-ms (then 408 and close);
// writing an answer that does not fit the socket buffer at once, --request-timeout-ms
// (then close); while a model call runs, none (the call has its own deadline).
class http_session : public std::enable_shared_from_this<http_session> {
 public:
  http_session(worker_state& worker, const app& application, tcp_socket socket);
  ~http_session();
  http_session(const http_session&) = delete;
  http_session& operator=(const http_session&) = delete;

  task<void> run();

  // The drain window after SIGTERM has passed: a connection waiting for its next request,
  // with no byte of it received, is closed now; one with a request under way finishes it
  // first (its answer says `Connection: close`).
  void on_drain_over();

 private:
  using request = boost::beast::http::request<boost::beast::http::string_body>;
  using request_parser = boost::beast::http::request_parser<boost::beast::http::string_body>;
  using clock = std::chrono::steady_clock;

  // What the connection is doing, which decides what its deadline means.
  enum class phase : std::uint8_t { idle, receiving, processing, sending, closing };

  struct request_meta {
    std::string_view method;
    std::string_view target;
    std::string request_id;
    std::size_t bytes_in = 0;
    unsigned version = 11;
    bool head = false;  // a HEAD request: the answer has no body
  };

  // Reads one request into `parser`. Success: a whole request, or `rejection` set when its
  // head breaks an RFC 9112 rule (check_request_head; the body is then left unread).
  task<boost::beast::error_code> read_request(request_parser& parser, std::optional<api_error>& rejection);
  task<bool> respond(request& req);
  task<response> call_model(convert_input input);
  // Answers a request that cannot be served (malformed, too large, timed out, refused
  // head), then closes with a lingering read.
  task<void> answer_error(const request& head, bool head_complete, const api_error& error);
  task<void> reject(const request& head, bool head_complete, boost::beast::error_code ec);
  task<bool> write(const response& res, const request_meta& meta, bool keep_alive, clock::time_point started);
  task<void> linger();
  std::string request_id_for(const request& req);
  void start_receiving();

  // Deadlines: set_deadline() only stores a time point, and re-arms the connection's one
  // timer only when the new deadline is earlier than the one it waits for; when the timer
  // fires early (the deadline moved later meanwhile) it waits again for the stored one. So
  // a deadline fires at its time, late only by the event loop's own delay, and the common
  // path (whole requests in one read, answers that fit the socket buffer) arms nothing.
  void set_deadline(clock::time_point deadline);
  void arm_timer();
  void on_deadline();

  worker_state& worker_;
  const app& app_;
  tcp_socket socket_;
  steady_timer timer_;
  clock::time_point deadline_ = clock::time_point::max();
  clock::time_point timer_expiry_ = clock::time_point::max();  // what the pending wait is for
  clock::time_point opened_;
  clock::time_point request_started_;  // first byte of the request being received
  boost::beast::flat_buffer buffer_;
  std::string out_;  // serialized response head, reused across requests
  std::uint64_t answered_ = 0;
  phase phase_ = phase::idle;
  bool timed_out_ = false;  // the request deadline passed: answer 408
  bool closed_ = false;
};

// Starts serving a freshly accepted connection on its worker's loop.
void spawn_session(worker_state& worker, const app& application, tcp_socket socket);

}  // namespace celsius
