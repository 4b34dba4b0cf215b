#include "http_session.hpp"

#include <fmt/format.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <ctime>
#include <exception>

#include "errors.hpp"
#include "json_write.hpp"
#include "logging.hpp"
#include "model_gateway.hpp"
#include "version.hpp"

namespace celsius {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::redirect_error;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

namespace {

method_label label_of(std::string_view method) {
  if (method == "GET") return method_label::get;
  if (method == "POST") return method_label::post;
  return method_label::other;
}

bool is_http_parse_error(const beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_method).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message && ec != http::error::need_more &&
         ec != http::error::need_buffer;
}

// The Date header, formatted at most once per second per thread.
std::string_view http_date() {
  thread_local std::time_t cached_second = 0;
  thread_local std::array<char, 32> text{};
  thread_local std::size_t length = 0;
  const std::time_t now = std::time(nullptr);
  if (now != cached_second) {
    std::tm utc{};
    gmtime_r(&now, &utc);
    length = std::strftime(text.data(), text.size(), "%a, %d %b %Y %H:%M:%S GMT", &utc);
    cached_second = now;
  }
  return {text.data(), length};
}

// Runs on the worker's loop (co_spawn posts there first), so the session registers
// itself with the worker from the worker's own thread.
task<void> serve(worker_state& worker, const app& application, tcp_socket socket) {
  const auto session = std::make_shared<http_session>(worker, application, std::move(socket));
  co_await session->run();
}

// Calls the model server and resumes the awaiting coroutine on its own loop. The client
// calls back on one of its threads: the result is posted to the loop, so the coroutine
// frame is resumed (and destroyed) only there. The work guard keeps the loop running
// until the answer is in; main waits for the gateway to be idle before the loops are
// destroyed, so a late callback never posts to a dead io_context.
template <typename CompletionToken>
auto async_predict(model_gateway& gateway, std::span<const double> fahrenheit, const executor& ex,
                   CompletionToken&& token) {
  return asio::async_initiate<CompletionToken, void(predict_result)>(
      [&gateway, fahrenheit, ex](auto handler) {
        struct pending {
          decltype(handler) resume;
          asio::executor_work_guard<executor> work;
        };
        auto state = std::make_shared<pending>(pending{std::move(handler), asio::make_work_guard(ex)});
        gateway.predict(fahrenheit, [state](predict_result result) {
          const executor loop = state->work.get_executor();
          asio::post(loop, [state, result = std::move(result)]() mutable {
            auto resume = std::move(state->resume);
            state->work.reset();
            resume(std::move(result));
          });
        });
      },
      token);
}

}  // namespace

void spawn_session(worker_state& worker, const app& application, tcp_socket socket) {
  const executor ex = socket.get_executor();
  asio::co_spawn(ex, serve(worker, application, std::move(socket)), asio::detached);
}

http_session::http_session(worker_state& worker, const app& application, tcp_socket socket)
    : worker_(worker),
      app_(application),
      socket_(std::move(socket)),
      watchdog_(socket_.get_executor()),
      watchdog_period_(std::max<milliseconds>(
          milliseconds(5),
          milliseconds(std::min(application.cfg().idle_timeout_ms, application.cfg().request_timeout_ms) / 4))) {
  worker_.sessions.insert(this);
}

http_session::~http_session() { worker_.sessions.erase(this); }

void http_session::set_deadline(milliseconds timeout) { deadline_ = steady_clock::now() + timeout; }

void http_session::arm_watchdog() {
  watchdog_.expires_after(watchdog_period_);
  watchdog_.async_wait([self = shared_from_this()](const beast::error_code& ec) {
    if (ec || self->closed_) return;
    if (self->idle_ && self->buffer_.size() != 0) {
      // The first bytes of a request arrived while waiting on the idle timeout: from now
      // on the (shorter) request timeout applies.
      self->idle_ = false;
      self->set_deadline(milliseconds(self->app_.cfg().request_timeout_ms));
    }
    if (steady_clock::now() >= self->deadline_) {
      beast::error_code ignored;
      self->socket_.close(ignored);  // the pending read or write fails at once
      return;
    }
    self->arm_watchdog();
  });
}

void http_session::on_shutdown() {
  if (!idle_ || buffer_.size() != 0) return;
  beast::error_code ec;
  const auto pending = socket_.available(ec);
  if (!ec && pending == 0) socket_.cancel(ec);
}

std::string http_session::request_id_for(const request& req) {
  const auto it = req.find("X-Request-Id");
  if (it != req.end() && is_safe_request_id(it->value())) return std::string(it->value());
  return worker_.ids.next();
}

task<void> http_session::run() {
  const config& cfg = app_.cfg();
  set_deadline(milliseconds(cfg.idle_timeout_ms));
  arm_watchdog();
  try {
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(cfg.max_header_bytes));
      parser.body_limit(cfg.max_body_bytes);

      idle_ = buffer_.size() == 0;
      if (worker_.stopping && idle_) break;
      set_deadline(milliseconds(idle_ ? cfg.idle_timeout_ms : cfg.request_timeout_ms));
      beast::error_code ec;
      co_await http::async_read_header(socket_, buffer_, parser, redirect_error(use_task, ec));
      idle_ = false;
      if (!ec && !parser.is_done()) {
        set_deadline(milliseconds(cfg.request_timeout_ms));
        // The head is valid and the declared body fits: only now ask for the body.
        if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
          static constexpr std::string_view go_on = "HTTP/1.1 100 Continue\r\n\r\n";
          co_await asio::async_write(socket_, asio::buffer(go_on), redirect_error(use_task, ec));
        }
        if (!ec) co_await http::async_read(socket_, buffer_, parser, redirect_error(use_task, ec));
      }
      if (ec) {
        // Nothing of a request arrived (peer closed, idle timeout, shutdown): just close.
        if (!parser.got_some() && buffer_.size() == 0) break;
        co_await reject(parser.get(), ec);
        break;
      }
      if (!co_await respond(parser.get())) break;
    }
  } catch (const std::exception& e) {
    // Only allocation failures can get here; never let an exception reach the loop.
    std::string fields = R"("what":)";
    append_json_string(fields, e.what());
    log_error("connection failed", fields);
  }
  closed_ = true;
  beast::error_code ignored;
  watchdog_.cancel();
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  socket_.close(ignored);
}

task<bool> http_session::respond(request& req) {
  const auto started = steady_clock::now();
  worker_.metrics.request_started();
  const request_meta meta{req.method_string(), req.target(), request_id_for(req), req.body().size(), req.version()};
  const request_view view{req.method_string(), req.target(), req[http::field::content_type], req.body()};
  response res = app_.handle(view);
  if (res.model_call) res = co_await call_model(std::move(*res.model_call));
  const bool keep_alive = req.keep_alive() && !worker_.stopping;
  co_return co_await write(res, meta, keep_alive, started);
}

task<response> http_session::call_model(convert_input input) {
  model_gateway& gateway = *app_.model();
  worker_.metrics.model_call_started();
  const auto started = steady_clock::now();
  const std::span<const double> values(input.fahrenheit.data(), input.fahrenheit.size());
  const predict_result result = co_await async_predict(gateway, values, socket_.get_executor(), use_task);
  worker_.metrics.model_call_finished(outcome_of(result), steady_clock::now() - started);
  co_return app_.model_answer(input, result, gateway.known_version());
}

task<void> http_session::reject(const request& head, beast::error_code ec) {
  const config& cfg = app_.cfg();
  api_error error{error_code::bad_request, "malformed HTTP request: " + ec.message()};
  if (ec == http::error::header_limit) {
    error = {error_code::header_too_large,
             fmt::format("request line and headers exceed {} bytes", cfg.max_header_bytes)};
  } else if (ec == http::error::body_limit) {
    error = {error_code::payload_too_large,
             fmt::format("request body exceeds the limit of {} bytes", cfg.max_body_bytes)};
  } else if (!is_http_parse_error(ec)) {
    co_return;  // timeout, reset or shutdown mid-request: the peer is gone or stalled
  }
  const auto started = steady_clock::now();
  worker_.metrics.request_started();
  response res;
  res.status = http_status(error.code);
  res.body = error_body(error);
  // A body-limit error comes after a complete head: count it on its route.
  if (ec == http::error::body_limit) res.matched = route_of(head.target());
  const request_meta meta{head.method_string(), head.target(), request_id_for(head), 0,
                          head.version() == 10 ? 10u : 11u};
  if (!co_await write(res, meta, false, started) && socket_.is_open()) co_await drain();
}

task<bool> http_session::write(const response& res, const request_meta& meta, bool keep_alive,
                               steady_clock::time_point started) {
  // Serialized by hand into one reused buffer: Beast's generic serializer showed up as
  // the largest cost in profiles of this tiny-response workload.
  out_.clear();
  const auto status = static_cast<http::status>(res.status);
  fmt::format_to(std::back_inserter(out_),
                 "HTTP/1.{} {} {}\r\nServer: celsius/{}\r\nDate: {}\r\nContent-Type: {}\r\n"
                 "Content-Length: {}\r\nX-App-Id: {}\r\nX-Request-Id: {}\r\n",
                 meta.version == 10 ? 0 : 1, res.status, http::obsolete_reason(status), version, http_date(),
                 res.content_type, res.body.size(), app_.app_id(), meta.request_id);
  if (!res.allow.empty()) fmt::format_to(std::back_inserter(out_), "Allow: {}\r\n", res.allow);
  if (!res.cache_control.empty()) fmt::format_to(std::back_inserter(out_), "Cache-Control: {}\r\n", res.cache_control);
  if (!keep_alive) {
    out_ += "Connection: close\r\n";
  } else if (meta.version == 10) {
    out_ += "Connection: keep-alive\r\n";
  }
  out_ += "\r\n";

  beast::error_code ec;
  set_deadline(milliseconds(app_.cfg().request_timeout_ms));
  const std::array<asio::const_buffer, 2> buffers{asio::buffer(out_), asio::buffer(res.body)};
  co_await asio::async_write(socket_, buffers, redirect_error(use_task, ec));

  const auto elapsed = steady_clock::now() - started;
  worker_.metrics.request_finished(res.matched, label_of(meta.method), res.status, elapsed);
  if (request_logging_enabled()) {
    log_request({meta.method, meta.target, res.status, elapsed, meta.bytes_in, res.body.size(), meta.request_id});
  }
  co_return !ec && keep_alive;
}

task<void> http_session::drain() {
  // Lingering close: after an error answer that left part of the request unread, stop
  // sending, then read and discard for a moment, so the kernel does not answer the
  // unread bytes with a reset that could destroy our response before the client reads it.
  beast::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  set_deadline(std::min(milliseconds(2000), milliseconds(app_.cfg().request_timeout_ms)));
  std::array<char, 4096> scratch;
  std::size_t drained = 0;
  while (!ec && drained < (std::size_t{4} << 20)) {
    drained += co_await socket_.async_read_some(asio::buffer(scratch), redirect_error(use_task, ec));
  }
}

}  // namespace celsius
