#include "rest_server.hpp"

#include <fmt/format.h>
#include <google/protobuf/arena.h>
#include <google/protobuf/util/json_util.h>
#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <ctime>

#include "json_tensor.hpp"
#include "message_arena.hpp"

namespace celsius::serving {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using tcp_socket = asio::basic_stream_socket<tcp, rest_executor>;
using stream_type = beast::basic_stream<tcp, rest_executor>;
inline constexpr asio::use_awaitable_t<rest_executor> use_task;

namespace {

rest_reply error_reply(const status& s) { return {http_status_of(s.error_code()), make_json_error(s.message())}; }

status to_json(const google::protobuf::Message& message, std::string& out) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  const auto result = google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!result.ok()) return internal_error("Failed to convert proto to json. Error: " + result.ToString());
  return {};
}

status model_spec_from(const rest_path& path, tensorflow::serving::ModelSpec& spec) {
  spec.set_name(path.model_name);
  if (path.version) spec.mutable_version()->set_value(*path.version);
  if (path.label) spec.set_version_label(*path.label);
  return {};
}

bool iequal_prefix(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && beast::iequals(text.substr(0, prefix.size()), prefix);
}

// A coroutine's completion handler made callable from any thread (a batch or timer thread):
// calling it resumes the coroutine on the session's loop, which the work guard keeps running
// meanwhile. Copyable, so it fits a std::function.
template <typename... Args, typename Handler>
auto resume_on_loop(Handler handler, const rest_executor& ex) {
  struct pending {
    Handler resume;
    asio::executor_work_guard<rest_executor> work;
  };
  auto state = std::make_shared<pending>(pending{std::move(handler), asio::make_work_guard(ex)});
  return [state](Args... args) {
    const rest_executor loop = state->work.get_executor();
    asio::post(loop, [state, ... args = std::move(args)]() mutable {
      auto resume = std::move(state->resume);
      state->work.reset();
      resume(std::move(args)...);
    });
  };
}

// Completes on the session's loop: the predictor may answer from a batch or timer thread.
template <typename Token>
auto async_predict(predictor& p, const tensorflow::serving::PredictRequest& request,
                   tensorflow::serving::PredictResponse& response, predict_context context, const rest_executor& ex,
                   Token&& token) {
  return asio::async_initiate<Token, void(status)>(
      [&p, &request, &response, context, ex](auto handler) {
        p.predict(request, response, context, resume_on_loop<status>(std::move(handler), ex));
      },
      token);
}

// Completes on the session's loop after the predictor's reply delay (the test aid).
template <typename Token>
auto async_reply_delay(predictor& p, const rest_executor& ex, Token&& token) {
  return asio::async_initiate<Token, void()>(
      [&p, ex](auto handler) { p.after_reply_delay(resume_on_loop<>(std::move(handler), ex)); }, token);
}

std::string_view http_date() {
  thread_local std::time_t cached = 0;
  thread_local std::array<char, 32> text{};
  thread_local std::size_t length = 0;
  const std::time_t now = std::time(nullptr);
  if (now != cached) {
    std::tm utc{};
    gmtime_r(&now, &utc);
    length = std::strftime(text.data(), text.size(), "%a, %d %b %Y %H:%M:%S GMT", &utc);
    cached = now;
  }
  return {text.data(), length};
}

std::string_view reason(unsigned status) {
  if (status == 499) return "Client Closed Request";
  return http::obsolete_reason(static_cast<http::status>(status));
}

// The malformed-replies test aid: {"predictions": {"unexpected": <the outputs>}}.
std::string malformed(const std::string& columnar_json) {
  const std::string_view key = "\"outputs\": ";
  const auto at = columnar_json.find(key);
  if (at == std::string::npos) return columnar_json;
  const std::string value = columnar_json.substr(at + key.size(), columnar_json.rfind('}') - at - key.size());
  return "{\n    \"predictions\": {\"unexpected\": " + value + "}\n}";
}

}  // namespace

rest_task<rest_reply> rest_api::handle(std::string_view method, std::string_view target, std::string_view body) const {
  const std::string_view path = target.substr(0, target.find('?'));
  if (!settings_.prometheus_path.empty() && path == settings_.prometheus_path) {
    co_return rest_reply{200, metrics_.prometheus_text(), "text/plain; version=0.0.4"};
  }
  const auto malformed_request = [&] { return fmt::format("Malformed request: {} {}", method, path); };
  if (!iequal_prefix(path, "/v1/")) co_return rest_reply{404, make_json_error(malformed_request())};
  const rest_path_result parsed = parse_rest_path(method, path);
  if (!parsed.error.empty()) co_return error_reply(invalid_argument(parsed.error));
  const rest_path& p = parsed.path;
  if (p.matched && method == "POST") {
    if (p.method == "predict") co_return co_await predict(p, body);
    if (p.method == "classify" || p.method == "regress") {
      co_return error_reply(unimplemented("celsius-model-server implements only :predict, not :" + p.method));
    }
  } else if (p.matched && method == "GET") {
    co_return p.subresource == "metadata" ? model_metadata(p) : model_status(p);
  }
  co_return error_reply(invalid_argument(malformed_request()));
}

rest_task<rest_reply> rest_api::predict(const rest_path& path, std::string_view body) const {
  // The request and response on one protobuf arena with a first block of 4 KiB: a small
  // unbatched Predict takes no allocation for its messages instead of one per string, map
  // entry and repeated field (with batching, the batch thread writing the outputs takes a block
  // of its own: protobuf arenas keep one per thread). The arena comes from this loop thread's
  // pool (the coroutine resumes on it). (Not in the coroutine frame: GCC's frames do not keep
  // the alignment protobuf checks for an initial block.)
  const message_arena_pool::handle arena = message_arena_pool::acquire();
  auto& request = *google::protobuf::Arena::CreateMessage<tensorflow::serving::PredictRequest>(&arena->arena);
  model_spec_from(path, *request.mutable_model_spec());
  json_format format = json_format::row;
  status parsed;
  {
    servable_handle keep;
    const auto lookup = [&](const std::string& signature, const input_map*& inputs) {
      return predictor_.signature_inputs(request.model_spec(), signature, keep, inputs);
    };
    parsed = fill_predict_request_from_json(body, lookup, request, format);
  }
  if (!parsed.ok()) {
    if (predictor_.reply_delayed()) {
      const rest_executor ex = co_await asio::this_coro::executor;
      co_await async_reply_delay(predictor_, ex, use_task);
    }
    co_return error_reply(parsed);
  }
  auto& response = *google::protobuf::Arena::CreateMessage<tensorflow::serving::PredictResponse>(&arena->arena);
  predict_context context;
  context.entrypoint = "REST";
  if (settings_.timeout_ms > 0) context.deadline = clock_type::now() + std::chrono::milliseconds(settings_.timeout_ms);
  status result;
  if (predictor_.synchronous()) {
    result = predictor_.predict_now(request, response, context);
  } else {
    const rest_executor ex = co_await asio::this_coro::executor;
    result = co_await async_predict(predictor_, request, response, context, ex, use_task);
  }
  if (!result.ok()) co_return error_reply(result);
  rest_reply reply;
  if (settings_.malformed_replies) {
    std::string json;
    if (status s = make_json_from_tensors(response.outputs(), json_format::columnar, json); !s.ok()) {
      co_return error_reply(s);
    }
    reply.body = malformed(json);
    co_return reply;
  }
  if (status s = make_json_from_tensors(response.outputs(), format, reply.body); !s.ok()) co_return error_reply(s);
  co_return reply;
}

rest_reply rest_api::model_status(const rest_path& path) const {
  if (path.model_name.empty()) return error_reply(invalid_argument("Missing model name in request."));
  tensorflow::serving::GetModelStatusRequest request;
  model_spec_from(path, *request.mutable_model_spec());
  tensorflow::serving::GetModelStatusResponse response;
  if (status s = predictor_.model_status(request, response); !s.ok()) return error_reply(s);
  rest_reply reply;
  if (status s = to_json(response, reply.body); !s.ok()) return error_reply(s);
  return reply;
}

rest_reply rest_api::model_metadata(const rest_path& path) const {
  if (path.model_name.empty()) return error_reply(invalid_argument("Missing model name in request."));
  tensorflow::serving::GetModelMetadataRequest request;
  request.add_metadata_field("signature_def");
  model_spec_from(path, *request.mutable_model_spec());
  tensorflow::serving::GetModelMetadataResponse response;
  if (status s = predictor_.metadata(request, response); !s.ok()) return error_reply(s);
  // http_rest_api_util.cc, ToJsonString(GetModelMetadataResponse): the model spec and the
  // unpacked SignatureDefMap printed separately and joined.
  std::string spec_json, signatures_json;
  tensorflow::serving::SignatureDefMap signatures;
  const auto it = response.metadata().find("signature_def");
  if (it == response.metadata().end() || !it->second.UnpackTo(&signatures)) {
    return error_reply(internal_error("Failed to unpack 'Any' object to 'SignatureDefMap'."));
  }
  if (status s = to_json(response.model_spec(), spec_json); !s.ok()) return error_reply(s);
  if (status s = to_json(signatures, signatures_json); !s.ok()) return error_reply(s);
  rest_reply reply;
  reply.body = "{\n\"model_spec\":" + spec_json + ",\n\"metadata\": {\"signature_def\": " + signatures_json + "}\n}\n";
  return reply;
}

class rest_server::session {
 public:
  session(rest_server& server, loop& l, tcp_socket socket) : server_(server), loop_(l), stream_(std::move(socket)) {
    server_.session_started(loop_, this);
  }
  ~session() { server_.session_ended(loop_, this); }
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  rest_task<void> run();
  void on_shutdown() {
    if (idle_ && buffer_.size() == 0) stream_.socket().cancel();
  }

 private:
  rest_task<bool> write(const rest_reply& reply, unsigned version, bool keep_alive, bool head);

  rest_server& server_;
  loop& loop_;
  stream_type stream_;
  beast::flat_buffer buffer_;
  std::string out_;
  bool idle_ = true;
};

rest_task<void> rest_server::session::run() {
  const rest_settings& cfg = server_.settings_;
  const auto timeout = std::chrono::milliseconds(std::max(cfg.timeout_ms, 1000));
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(cfg.max_header_bytes));
    parser.body_limit(cfg.max_body_bytes);
    idle_ = buffer_.size() == 0;
    if (server_.stopping_ && idle_) break;
    beast::error_code ec;
    stream_.expires_after(idle_ ? cfg.idle_timeout : timeout);
    co_await http::async_read_header(stream_, buffer_, parser, asio::redirect_error(use_task, ec));
    idle_ = false;
    if (!ec && !parser.is_done()) {
      stream_.expires_after(timeout);
      if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
        static constexpr std::string_view go_on = "HTTP/1.1 100 Continue\r\n\r\n";
        co_await asio::async_write(stream_, asio::buffer(go_on), asio::redirect_error(use_task, ec));
      }
      if (!ec) co_await http::async_read(stream_, buffer_, parser, asio::redirect_error(use_task, ec));
    }
    if (ec) {
      if (!parser.got_some() && buffer_.size() == 0) break;  // closed, idle timeout, shutdown
      rest_reply reply;
      if (ec == http::error::header_limit) {
        reply = {431, make_json_error(fmt::format("request line and headers exceed {} bytes", cfg.max_header_bytes))};
      } else if (ec == http::error::body_limit) {
        reply = {413, make_json_error(fmt::format("request body exceeds {} bytes", cfg.max_body_bytes))};
      } else if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
                 ec != http::error::end_of_stream && ec != http::error::partial_message) {
        reply = {400, make_json_error("malformed HTTP request: " + ec.message())};
      } else {
        break;  // timeout or reset mid-request: the peer is gone or stalled
      }
      co_await write(reply, 11, false, false);
      break;
    }
    auto& req = parser.get();
    const rest_reply reply = co_await server_.api_.handle(req.method_string(), req.target(), req.body());
    const bool keep_alive = req.keep_alive() && !server_.stopping_;
    if (!co_await write(reply, req.version(), keep_alive, req.method() == http::verb::head)) break;
  }
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream_.socket().close(ignored);
}

rest_task<bool> rest_server::session::write(const rest_reply& reply, unsigned version, bool keep_alive, bool head) {
  out_.clear();
  fmt::format_to(std::back_inserter(out_), "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nDate: {}\r\nContent-Length: {}\r\n",
                 reply.status, reason(reply.status), reply.content_type, http_date(), reply.body.size());
  if (server_.settings_.cors) {
    out_ +=
        "Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: POST, GET\r\n"
        "Access-Control-Allow-Headers: Content-Type\r\n";
  }
  if (!keep_alive) {
    out_ += "Connection: close\r\n";
  } else if (version == 10) {
    out_ += "Connection: keep-alive\r\n";
  }
  out_ += "\r\n";
  beast::error_code ec;
  stream_.expires_after(std::chrono::milliseconds(std::max(server_.settings_.timeout_ms, 1000)));
  const std::array<asio::const_buffer, 2> buffers{asio::buffer(out_),
                                                  head ? asio::const_buffer() : asio::buffer(reply.body)};
  co_await asio::async_write(stream_, buffers, asio::redirect_error(use_task, ec));
  co_return !ec && keep_alive;
}

rest_server::rest_server(predictor& p, const serving_metrics& metrics, rest_settings s)
    : api_(p, metrics, s), settings_(std::move(s)) {
  for (int i = 0; i < std::max(settings_.threads, 1); ++i) loops_.push_back(std::make_unique<loop>());
}

rest_server::~rest_server() { shutdown(std::chrono::milliseconds(0)); }

void rest_server::session_started(loop& l, session* s) {
  l.sessions.insert(s);
  std::lock_guard lock(mutex_);
  ++live_sessions_;
}

void rest_server::session_ended(loop& l, session* s) {
  l.sessions.erase(s);
  {
    std::lock_guard lock(mutex_);
    --live_sessions_;
  }
  drained_.notify_all();
}

int rest_server::start(std::string& error) {
  try {
    const tcp::endpoint endpoint(asio::ip::make_address(settings_.address), static_cast<std::uint16_t>(settings_.port));
    acceptor_ = std::make_unique<asio::basic_socket_acceptor<tcp, rest_executor>>(loops_.front()->ioc.get_executor());
    acceptor_->open(endpoint.protocol());
    acceptor_->set_option(tcp::acceptor::reuse_address(true));
    acceptor_->bind(endpoint);
    acceptor_->listen(asio::socket_base::max_listen_connections);
  } catch (const boost::system::system_error& e) {
    error = e.what();
    acceptor_.reset();
    return 0;
  }
  const int port = acceptor_->local_endpoint().port();
  asio::co_spawn(loops_.front()->ioc.get_executor(), accept_loop(), asio::detached);
  for (auto& l : loops_) {
    l->guard.emplace(l->ioc.get_executor());
    l->thread = std::thread([&ioc = l->ioc] { ioc.run(); });
  }
  return port;
}

rest_task<void> rest_server::accept_loop() {
  for (;;) {
    loop& target = *loops_[next_loop_];
    next_loop_ = (next_loop_ + 1) % loops_.size();
    beast::error_code ec;
    tcp_socket socket = co_await acceptor_->async_accept(target.ioc, asio::redirect_error(use_task, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_->is_open() || stopping_) co_return;
      spdlog::warn("HTTP/REST accept failed: {}", ec.message());
      asio::basic_waitable_timer<std::chrono::steady_clock, asio::wait_traits<std::chrono::steady_clock>, rest_executor>
          pause(acceptor_->get_executor(), std::chrono::milliseconds(50));
      co_await pause.async_wait(asio::redirect_error(use_task, ec));
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(
        target.ioc.get_executor(),
        [this, &target, s = std::move(socket)]() mutable -> rest_task<void> {
          session conversation(*this, target, std::move(s));
          co_await conversation.run();
        },
        asio::detached);
  }
}

void rest_server::shutdown(std::chrono::milliseconds grace) {
  if (stopped_ || !acceptor_) return;
  stopping_ = true;
  asio::post(loops_.front()->ioc, [this] {
    beast::error_code ignored;
    acceptor_->close(ignored);
  });
  for (auto& l : loops_) {
    asio::post(l->ioc, [&l = *l] {
      for (session* s : l.sessions) s->on_shutdown();
    });
  }
  {
    std::unique_lock lock(mutex_);
    drained_.wait_for(lock, grace, [this] { return live_sessions_ == 0; });
  }
  for (auto& l : loops_) {
    l->guard.reset();
    l->ioc.stop();
  }
  for (auto& l : loops_) {
    if (l->thread.joinable()) l->thread.join();
  }
  // The loops (and what was posted to them) stay until the destructor: a model answer that
  // arrives after the grace period is posted to a stopped loop, never to a destroyed one.
  stopped_ = true;
}

}  // namespace celsius::serving
