#pragma once

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp needs std::exchange

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "metrics.hpp"
#include "predictor.hpp"
#include "rest_paths.hpp"

namespace celsius::serving {

using rest_executor = boost::asio::io_context::executor_type;
template <typename T>
using rest_task = boost::asio::awaitable<T, rest_executor>;

struct rest_settings {
  std::string address = "0.0.0.0";
  int port = 0;
  int threads = 1;                 // --rest_api_num_threads: one event loop each
  int timeout_ms = 30000;          // --rest_api_timeout_in_ms: the model run's timeout, and reading a request
  bool cors = false;               // --rest_api_enable_cors_support
  std::string prometheus_path;     // empty: no metrics page
  bool malformed_replies = false;  // test aid
  std::size_t max_body_bytes = std::size_t{256} << 20;
  std::size_t max_header_bytes = 64 << 10;
  std::chrono::milliseconds idle_timeout{60000};  // keep-alive connections without a request
};

struct rest_reply {
  unsigned status = 200;
  std::string body;
  std::string_view content_type = "application/json";
};

// TF Serving's HTTP/REST API (model_servers/http_rest_api_handler.cc and http_server.cc):
//   POST /v1/models/NAME[/versions/N|/labels/L]:predict     Predict (row or columnar JSON)
//   GET  /v1/models/NAME[/versions/N|/labels/L]              GetModelStatus as JSON
//   GET  /v1/models/NAME[/versions/N|/labels/L]/metadata     GetModelMetadata as JSON
//   GET  <prometheus path>                                   metrics (--monitoring_config_file)
// Errors are {"error": "..."} with http_status_of(code); any other /v1/ request is 400
// "Malformed request: METHOD PATH"; :classify and :regress are 501 here.
class rest_api {
 public:
  rest_api(predictor& p, const serving_metrics& metrics, rest_settings s)
      : predictor_(p), metrics_(metrics), settings_(std::move(s)) {}

  // Answers one request; awaits the model when the predictor is not synchronous.
  rest_task<rest_reply> handle(std::string_view method, std::string_view target, std::string_view body) const;

 private:
  rest_task<rest_reply> predict(const rest_path& path, std::string_view body) const;
  rest_reply model_status(const rest_path& path) const;
  rest_reply model_metadata(const rest_path& path) const;

  predictor& predictor_;
  const serving_metrics& metrics_;
  const rest_settings settings_;
};

// The HTTP/1.1 server (Boost.Beast): keep-alive, pipelining, Expect: 100-continue, request
// size limits (431/413), TCP_NODELAY; on shutdown idle connections close at once and
// connections with a request under way finish it first.
class rest_server {
 public:
  rest_server(predictor& p, const serving_metrics& metrics, rest_settings s);
  ~rest_server();
  rest_server(const rest_server&) = delete;
  rest_server& operator=(const rest_server&) = delete;

  // Binds and starts the loops; the bound port, or 0 and `error`.
  int start(std::string& error);
  // Stops accepting, lets requests under way finish (at most `grace`), stops the loops.
  void shutdown(std::chrono::milliseconds grace);

  class session;

 private:
  struct loop {
    std::set<session*> sessions;  // touched only on this loop's thread; outlives ioc
    boost::asio::io_context ioc{1};
    std::optional<boost::asio::executor_work_guard<rest_executor>> guard;
    std::thread thread;
  };
  rest_task<void> accept_loop();
  void session_started(loop& l, session* s);
  void session_ended(loop& l, session* s);

  // Declaration order matters for destruction: the loops (whose io_context destroys the
  // frames of sessions still suspended) go before the counters those sessions update, and
  // the acceptor before its loop.
  rest_api api_;
  rest_settings settings_;
  std::mutex mutex_;
  std::condition_variable drained_;
  std::size_t live_sessions_ = 0;
  std::atomic<bool> stopping_{false};
  bool stopped_ = false;
  std::vector<std::unique_ptr<loop>> loops_;
  std::unique_ptr<boost::asio::basic_socket_acceptor<boost::asio::ip::tcp, rest_executor>> acceptor_;
  std::size_t next_loop_ = 0;
  friend class session;
};

}  // namespace celsius::serving
