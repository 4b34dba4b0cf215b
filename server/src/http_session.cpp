#include "http_session.hpp"

#include <fmt/format.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/status.hpp>
#include <ctime>
#include <exception>

#include "errors.hpp"
#include "json_write.hpp"
#include "logging.hpp"
#include "loop_post.hpp"
#include "model_gateway.hpp"
#include "request_head.hpp"
#include "version.hpp"

namespace celsius {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::redirect_error;
using std::chrono::milliseconds;

namespace {

method_label label_of(std::string_view method) {
  if (method == "GET") return method_label::get;
  if (method == "HEAD") return method_label::head;
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
          // One post per loop for all the members of a merged call (loop_post.hpp).
          post_to_loop(loop, [state, result = std::move(result)]() mutable {
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
      timer_(socket_.get_executor()),
      opened_(clock::now()) {
  worker_.sessions.insert(this);
  beast::error_code ignored;
  // Writes are tried at once without waiting (see write()); reads stay asynchronous.
  socket_.non_blocking(true, ignored);
}

http_session::~http_session() {
  worker_.sessions.erase(this);
  if (worker_.stopping && worker_.sessions.empty() && worker_.drain_timer != nullptr) {
    worker_.drain_timer->cancel();  // nothing left to drain: let the loop end now
  }
}

void http_session::set_deadline(clock::time_point deadline) {
  deadline_ = deadline;
  if (deadline < timer_expiry_) arm_timer();
}

void http_session::arm_timer() {
  timer_expiry_ = deadline_;
  if (deadline_ == clock::time_point::max()) {
    timer_.cancel();  // no deadline: nothing to wait for
    return;
  }
  timer_.expires_at(deadline_);  // cancels the wait in progress, if any
  timer_.async_wait([self = shared_from_this()](const beast::error_code& ec) {
    if (ec || self->closed_) return;  // re-armed (a newer wait is pending) or done
    self->timer_expiry_ = clock::time_point::max();
    if (clock::now() < self->deadline_) {
      self->arm_timer();  // the deadline moved later since this wait began
      return;
    }
    self->on_deadline();
  });
}

void http_session::on_deadline() {
  beast::error_code ignored;
  switch (phase_) {
    case phase::receiving:
      // Part of a request arrived but not all of it in time: stop reading, answer 408.
      timed_out_ = true;
      socket_.cancel(ignored);
      break;
    case phase::idle:          // idle keep-alive connection: close without a word
    case phase::sending:       // the client does not read its answer
    case phase::closing:       // the lingering read after an error answer is over
      socket_.close(ignored);  // the pending read or write fails at once
      break;
    case phase::processing:
      break;  // the model call has its own deadline
  }
}

void http_session::on_drain_over() {
  if (phase_ != phase::idle || buffer_.size() != 0) return;
  beast::error_code ec;
  const auto pending = socket_.available(ec);
  if (!ec && pending == 0) socket_.cancel(ec);
}

std::string http_session::request_id_for(const request& req) {
  const auto it = req.find("X-Request-Id");
  if (it != req.end() && is_safe_request_id(it->value())) return std::string(it->value());
  return worker_.ids.next();
}

void http_session::start_receiving() {
  phase_ = phase::receiving;
  request_started_ = clock::now();
}

task<beast::error_code> http_session::read_request(request_parser& parser, std::optional<api_error>& rejection) {
  const config& cfg = app_.cfg();
  if (buffer_.size() == 0) {
    phase_ = phase::idle;
    set_deadline(clock::now() + milliseconds(cfg.idle_timeout_ms));
  } else {
    start_receiving();  // a pipelined request is already here
  }
  bool head_checked = false;
  beast::error_code ec;
  for (;;) {
    if (buffer_.size() != 0) {
      if (phase_ == phase::idle) start_receiving();
      const std::size_t used = parser.put(buffer_.data(), ec);
      buffer_.consume(used);
      if (ec && ec != http::error::need_more) co_return ec;
      if (!ec && parser.is_header_done() && !head_checked) {
        head_checked = true;
        rejection = check_request_head(parser.get(), parser.chunked());
        if (rejection) co_return beast::error_code{};
        parser.eager(true);  // from here on, parse as much of the body as each read brings
        if (!parser.is_done() && beast::iequals(parser.get()[http::field::expect], "100-continue")) {
          // The head is valid and the declared body fits: only now ask for the body.
          static constexpr std::string_view go_on = "HTTP/1.1 100 Continue\r\n\r\n";
          set_deadline(request_started_ + milliseconds(cfg.request_timeout_ms));
          co_await asio::async_write(socket_, asio::buffer(go_on), redirect_error(use_task, ec));
          if (timed_out_) co_return beast::error_code(asio::error::timed_out);
          if (ec) co_return ec;
        }
      }
      if (!ec && parser.is_done()) co_return ec;
      if (!ec && used != 0 && buffer_.size() != 0) continue;  // more to parse
      ec = {};
    }
    if (phase_ == phase::idle && worker_.drain_over) co_return beast::error_code(asio::error::operation_aborted);
    // Waiting for bytes: only now does the request's deadline need the timer.
    if (phase_ == phase::receiving) set_deadline(request_started_ + milliseconds(cfg.request_timeout_ms));
    const std::size_t size = beast::read_size(buffer_, 65536);
    const std::size_t n = co_await socket_.async_read_some(buffer_.prepare(size), redirect_error(use_task, ec));
    buffer_.commit(n);
    // The deadline passed while the read was completing (its bytes came too late): 408.
    if (timed_out_) co_return beast::error_code(asio::error::timed_out);
    if (ec == asio::error::eof) co_return parser.got_some() ? beast::error_code(http::error::partial_message) : ec;
    if (ec) co_return ec;
  }
}

task<void> http_session::run() {
  const config& cfg = app_.cfg();
  try {
    for (;;) {
      request_parser parser;
      parser.header_limit(static_cast<std::uint32_t>(cfg.max_header_bytes));
      parser.body_limit(cfg.max_body_bytes);

      std::optional<api_error> rejection;
      const beast::error_code ec = co_await read_request(parser, rejection);
      if (rejection) {
        co_await answer_error(parser.get(), true, *rejection);
        break;
      }
      if (timed_out_) {
        // A named value, not a temporary in the co_await expression: g++ 12 destroys such
        // temporaries twice (a double free, seen here).
        const api_error timeout{error_code::request_timeout,
                                fmt::format("the request did not arrive whole within {} ms", cfg.request_timeout_ms)};
        co_await answer_error(parser.get(), parser.is_header_done(), timeout);
        break;
      }
      if (ec) {
        // Nothing of a request arrived (peer closed, idle timeout, shutdown): just close.
        if (!parser.got_some() && buffer_.size() == 0) break;
        co_await reject(parser.get(), parser.is_header_done(), ec);
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
  timer_.cancel();
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  socket_.close(ignored);
}

task<bool> http_session::respond(request& req) {
  const config& cfg = app_.cfg();
  const auto started = clock::now();
  phase_ = phase::processing;
  deadline_ = clock::time_point::max();  // no client deadline while the answer is computed
  worker_.metrics.request_started();
  const bool head = req.method() == http::verb::head;
  const request_meta meta{req.method_string(), req.target(),  request_id_for(req),
                          req.body().size(),   req.version(), head};
  std::string storage;
  const request_view view{req.method_string(), origin_form(req.target(), storage), req[http::field::content_type],
                          req.body()};
  response res = app_.handle(view);
  if (res.model_call) res = co_await call_model(std::move(*res.model_call));
  // Bounded connection lifetime (nginx's keepalive_requests / keepalive_time): the answer
  // that reaches a limit says `Connection: close`, so clients reconnect and a load
  // balancer can send the new connection to another replica.
  ++answered_;
  const bool within_lifetime = (cfg.keepalive_requests == 0 || answered_ < cfg.keepalive_requests) &&
                               (cfg.keepalive_time_ms == 0 || started - opened_ < milliseconds(cfg.keepalive_time_ms));
  const bool keep_alive = req.keep_alive() && !worker_.stopping && within_lifetime;
  co_return co_await write(res, meta, keep_alive, started);
}

task<response> http_session::call_model(convert_input input) {
  model_gateway& gateway = *app_.model();
  worker_.metrics.model_call_started();
  const auto started = clock::now();
  const std::span<const double> values(input.fahrenheit.data(), input.fahrenheit.size());
  const predict_result result = co_await async_predict(gateway, values, socket_.get_executor(), use_task);
  worker_.metrics.model_call_finished(outcome_of(result), clock::now() - started);
  co_return app_.model_answer(input, result, gateway.known_version());
}

task<void> http_session::reject(const request& head, bool head_complete, beast::error_code ec) {
  const config& cfg = app_.cfg();
  api_error error{error_code::bad_request, "malformed HTTP request: " + ec.message()};
  if (ec == http::error::header_limit) {
    error = {error_code::header_too_large,
             fmt::format("request line and headers exceed {} bytes", cfg.max_header_bytes)};
  } else if (ec == http::error::body_limit) {
    error = {error_code::payload_too_large,
             fmt::format("request body exceeds the limit of {} bytes", cfg.max_body_bytes)};
  } else if (!is_http_parse_error(ec)) {
    co_return;  // reset or shutdown mid-request, or the peer closed: the peer is gone
  }
  co_await answer_error(head, head_complete, error);
}

task<void> http_session::answer_error(const request& head, bool head_complete, const api_error& error) {
  const auto started = clock::now();
  worker_.metrics.request_started();
  response res;
  res.status = http_status(error.code);
  res.body = error_body(error);
  // With a complete head the request is counted on its route. A HEAD gets no body, even
  // when its head could not be parsed (too large, malformed, timed out): its request line
  // is still at the start of the unparsed bytes.
  if (head_complete) res.matched = route_of(head.target());
  const std::string_view unparsed(static_cast<const char*>(buffer_.data().data()), buffer_.size());
  const bool head_method = head_complete ? head.method() == http::verb::head : unparsed.starts_with("HEAD ");
  const request_meta meta{
      head_complete ? head.method_string() : std::string_view(), head_complete ? head.target() : std::string_view(),
      head_complete ? request_id_for(head) : worker_.ids.next(), 0,
      head_complete && head.version() == 10 ? 10u : 11u,         head_method};
  if (!co_await write(res, meta, false, started) && socket_.is_open()) co_await linger();
}

task<bool> http_session::write(const response& res, const request_meta& meta, bool keep_alive,
                               clock::time_point started) {
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

  // A HEAD answer is the GET answer's status and headers, Content-Length included, and
  // never a body (RFC 9110 section 9.3.2), whatever the status.
  const std::string_view body = meta.head ? std::string_view() : std::string_view(res.body);
  const std::array<asio::const_buffer, 2> buffers{asio::buffer(out_), asio::buffer(body)};
  phase_ = phase::sending;
  beast::error_code ec;
  // Most answers fit the socket's send buffer: written at once, no deadline needed. Only
  // the rest of one that does not is waited for, under --request-timeout-ms.
  const std::size_t total = out_.size() + body.size();
  const std::size_t written = socket_.write_some(buffers, ec);
  if (written < total && (!ec || ec == asio::error::would_block || ec == asio::error::try_again)) {
    ec = {};
    beast::buffers_suffix<std::array<asio::const_buffer, 2>> rest(buffers);
    rest.consume(written);
    set_deadline(clock::now() + milliseconds(app_.cfg().request_timeout_ms));
    co_await asio::async_write(socket_, rest, redirect_error(use_task, ec));
  }

  const auto elapsed = clock::now() - started;
  worker_.metrics.request_finished(res.matched, label_of(meta.method), res.status, elapsed);
  if (request_logging_enabled()) {
    log_request({meta.method, meta.target, res.status, elapsed, meta.bytes_in, body.size(), meta.request_id});
  }
  co_return !ec && keep_alive;
}

task<void> http_session::linger() {
  // Lingering close: after an error answer that left part of the request unread, stop
  // sending, then read and discard for a moment, so the kernel does not answer the
  // unread bytes with a reset that could destroy our response before the client reads it.
  beast::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  phase_ = phase::closing;
  set_deadline(clock::now() + std::min(milliseconds(2000), milliseconds(app_.cfg().request_timeout_ms)));
  std::array<char, 4096> scratch;
  std::size_t drained = 0;
  while (!ec && drained < (std::size_t{4} << 20)) {
    drained += co_await socket_.async_read_some(asio::buffer(scratch), redirect_error(use_task, ec));
  }
}

}  // namespace celsius
