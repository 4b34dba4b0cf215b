#include "rest_model_client.hpp"

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp needs std::exchange

#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <sys/socket.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <cerrno>
#include <charconv>
#include <deque>
#include <thread>
#include <vector>

#include "config.hpp"
#include "json_body.hpp"
#include "json_write.hpp"

namespace celsius {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// SAX handler for `{"predictions": [numbers]}`: numbers arrive as their raw text and are
// read exactly by parse_double; anything else inside the array makes the reply malformed.
class predictions_handler : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, predictions_handler> {
 public:
  bool Default() { return other(); }
  bool RawNumber(const Ch* str, rapidjson::SizeType len, bool /*copy*/) {
    if (!in_predictions_ || depth_ != 2) return other();
    double value = 0;
    if (!parse_double({str, len}, value)) problem_ = "unreadable number";
    values_.push_back(value);
    return true;
  }
  bool StartObject() {
    if (depth_ != 0) other();
    ++depth_;
    return true;
  }
  bool Key(const Ch* str, rapidjson::SizeType len, bool /*copy*/) {
    if (depth_ == 1) {
      in_predictions_ = std::string_view(str, len) == "predictions";
      if (in_predictions_ && seen_predictions_) problem_ = "'predictions' appears twice";
      seen_predictions_ = seen_predictions_ || in_predictions_;
    }
    return true;
  }
  bool EndObject(rapidjson::SizeType /*members*/) {
    --depth_;
    return true;
  }
  bool StartArray() {
    if (in_predictions_ && depth_ == 1) {
      found_ = true;
    } else {
      other();
    }
    ++depth_;
    return true;
  }
  bool EndArray(rapidjson::SizeType /*elements*/) {
    --depth_;
    return true;
  }

  std::vector<double> values_;
  bool found_ = false;
  std::optional<std::string> problem_;

 private:
  bool other() {
    if (in_predictions_ && depth_ >= 1) problem_ = "'predictions' holds something other than numbers";
    return true;
  }
  int depth_ = 0;
  bool in_predictions_ = false;
  bool seen_predictions_ = false;
};

std::string shorten(std::string_view text) {
  constexpr std::size_t limit = 200;
  return text.size() <= limit ? std::string(text) : std::string(text.substr(0, limit)) + "...";
}

struct http_reply {
  unsigned status = 0;
  std::string body;
};
using exchange_result = std::variant<http_reply, model_error>;

using executor = asio::io_context::executor_type;
using socket_type = asio::basic_stream_socket<tcp, executor>;
using resolver_type = asio::ip::basic_resolver<tcp, executor>;
using timer_type =
    asio::basic_waitable_timer<std::chrono::steady_clock, asio::wait_traits<std::chrono::steady_clock>, executor>;
template <typename T>
using task = asio::awaitable<T, executor>;
constexpr asio::use_awaitable_t<executor> use_task;

struct connection {
  explicit connection(const executor& ex) : socket(ex) {}
  socket_type socket;
  beast::flat_buffer buffer;
};

class rest_model_client final : public model_client {
 public:
  explicit rest_model_client(const rest_model_options& options)
      : options_(options), guard_(ioc_.get_executor()), host_header_(host_port(options.host, options.port)) {
    std::string base = "/v1/models/" + options.model_name;
    if (options.model_version) base += "/versions/" + std::to_string(*options.model_version);
    status_target_ = base;
    predict_target_ = base + ":predict";
    thread_ = std::thread([this] { ioc_.run(); });
  }

  ~rest_model_client() override {
    guard_.reset();
    asio::post(ioc_, [this] { idle_.clear(); });
    thread_.join();
  }

  void predict(std::span<const double> fahrenheit, clock::time_point deadline,
               std::function<void(predict_result)> done) override {
    const std::size_t expected = fahrenheit.size();
    start(http::verb::post, predict_target_, rest_predict_body(fahrenheit), deadline,
          [expected, done = std::move(done)](exchange_result result) {
            if (auto* failure = std::get_if<model_error>(&result)) return done(std::move(*failure));
            const auto& reply = std::get<http_reply>(result);
            if (reply.status == 200) return done(parse_rest_predictions(reply.body, expected));
            done(error_for(reply));
          });
  }

  void status(std::function<void(model_status)> done) override {
    start(http::verb::get, status_target_, {}, clock::now() + options_.timeout,
          [done = std::move(done)](exchange_result result) {
            model_status out;
            if (auto* failure = std::get_if<model_error>(&result)) {
              out.detail = failure->message;
            } else if (const auto& reply = std::get<http_reply>(result); reply.status == 200) {
              out = parse_rest_status(reply.body);
            } else {
              out.detail = error_for(reply).message;
            }
            done(std::move(out));
          });
  }

 private:
  static model_error error_for(const http_reply& reply) {
    std::string message = fmt::format("model server answered {}: {}", reply.status, parse_rest_error(reply.body));
    if (reply.status == 503) return {model_failure::unavailable, std::move(message)};
    if (reply.status == 504) return {model_failure::timeout, std::move(message)};
    return {model_failure::error, std::move(message)};
  }

  void start(http::verb verb, const std::string& target, std::string body, clock::time_point deadline,
             std::function<void(exchange_result)> done) {
    asio::co_spawn(ioc_.get_executor(), exchange(verb, target, std::move(body), deadline, std::move(done)),
                   asio::detached);
  }

  // What a timer that fires mid-call needs to cut it short.
  struct call_state {
    std::shared_ptr<connection> conn;
    std::shared_ptr<resolver_type> resolver;
    bool timed_out = false;
  };

  task<void> exchange(http::verb verb, std::string target, std::string body, clock::time_point deadline,
                      std::function<void(exchange_result)> done) {
    exchange_result result = co_await roundtrip(verb, target, body, deadline);
    done(std::move(result));
  }

  task<exchange_result> roundtrip(http::verb verb, const std::string& target, const std::string& body,
                                  clock::time_point due) {
    const executor ex = ioc_.get_executor();
    auto state = std::make_shared<call_state>();
    timer_type deadline(ex);
    deadline.expires_at(due);
    deadline.async_wait([state](const beast::error_code& ec) {
      if (ec) return;
      state->timed_out = true;
      beast::error_code ignored;
      if (state->resolver) state->resolver->cancel();
      if (state->conn) state->conn->socket.close(ignored);
    });
    const auto timeout = [] { return model_error{model_failure::timeout, "model server did not answer in time"}; };

    http::request<http::string_body> request(verb, target, 11);
    request.set(http::field::host, host_header_);
    request.set(http::field::user_agent, "celsius");
    if (verb == http::verb::post) request.set(http::field::content_type, "application/json");
    request.body() = body;
    request.prepare_payload();

    // At most two attempts: a pooled connection first (when one is fit for use), and, if
    // that fails before any byte of the answer, one more on a NEW connection, never on
    // another pooled one (it may be as stale as the first). Predictions are idempotent.
    for (bool fresh = false;; fresh = true) {
      beast::error_code ec;
      state->conn = fresh ? nullptr : take_idle();
      const bool reused = state->conn != nullptr;
      if (!reused) {
        state->conn = std::make_shared<connection>(ex);
        state->resolver = std::make_shared<resolver_type>(ex);
        const auto endpoints = co_await state->resolver->async_resolve(options_.host, std::to_string(options_.port),
                                                                       asio::redirect_error(use_task, ec));
        state->resolver.reset();
        if (state->timed_out) co_return timeout();
        if (ec) {
          co_return model_error{model_failure::unavailable,
                                fmt::format("cannot resolve model server host '{}': {}", options_.host, ec.message())};
        }
        co_await asio::async_connect(state->conn->socket, endpoints, asio::redirect_error(use_task, ec));
        if (state->timed_out) co_return timeout();
        if (ec) {
          co_return model_error{model_failure::unavailable,
                                fmt::format("cannot connect to model server {}: {}", host_header_, ec.message())};
        }
        state->conn->socket.set_option(tcp::no_delay(true), ec);
      }

      connection& conn = *state->conn;
      co_await http::async_write(conn.socket, request, asio::redirect_error(use_task, ec));
      http::response_parser<http::string_body> parser;
      parser.body_limit(std::uint64_t{64} << 20);
      if (!ec) co_await http::async_read(conn.socket, conn.buffer, parser, asio::redirect_error(use_task, ec));
      if (state->timed_out) co_return timeout();
      if (ec) {
        // The server closed a kept-alive connection (idle timeout) as we sent on it.
        if (reused && !parser.got_some()) continue;
        co_return model_error{model_failure::unavailable,
                              fmt::format("model server connection failed: {}", ec.message())};
      }
      deadline.cancel();
      auto& reply = parser.get();
      if (reply.keep_alive() && conn.buffer.size() == 0) give_back(std::move(state->conn));
      co_return http_reply{reply.result_int(), std::move(reply.body())};
    }
  }

  // A pooled connection fit for a request, or null. Connections idle longer than
  // max_idle_age are closed unused (servers close idle keep-alive connections, often
  // after a few seconds, without telling the client first); the rest are checked for a
  // close or stray bytes from the server that arrived while they sat in the pool.
  std::shared_ptr<connection> take_idle() {
    const auto now = std::chrono::steady_clock::now();
    while (!idle_.empty() && now - idle_.front().since >= options_.max_idle_age) idle_.pop_front();  // oldest first
    while (!idle_.empty()) {
      std::shared_ptr<connection> conn = std::move(idle_.back().conn);  // the most recently used
      idle_.pop_back();
      if (quiet_and_open(conn->socket)) return conn;
    }
    return nullptr;
  }

  void give_back(std::shared_ptr<connection> conn) {
    if (options_.max_idle_age.count() <= 0) return;
    if (idle_.size() >= options_.max_idle_connections) idle_.pop_front();
    idle_.push_back({std::move(conn), std::chrono::steady_clock::now()});
  }

  // True when nothing is waiting to be read on an idle connection: no EOF (the server
  // closed it), no reset, no unexpected bytes. One non-blocking peek (MSG_PEEK).
  static bool quiet_and_open(socket_type& socket) {
    char byte = 0;
    const ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }

  struct idle_connection {
    std::shared_ptr<connection> conn;
    std::chrono::steady_clock::time_point since;  // when it went back to the pool
  };

  rest_model_options options_;
  asio::io_context ioc_{1};
  asio::executor_work_guard<executor> guard_;
  std::string host_header_;
  std::string status_target_;
  std::string predict_target_;
  std::deque<idle_connection> idle_;  // oldest first; touched only on the client's thread
  std::thread thread_;
};

}  // namespace

std::string rest_predict_body(std::span<const double> fahrenheit) {
  std::string body = R"({"signature_name":"serving_default","instances":[)";
  for (std::size_t i = 0; i < fahrenheit.size(); ++i) {
    if (i != 0) body += ',';
    const std::size_t start = body.size();
    append_json_number(body, fahrenheit[i]);
    // TF Serving reads an integer-looking number above 2^53 as int64 and refuses it for a
    // DT_DOUBLE input ("Cannot convert JSON value: ... without loss of precision",
    // util/json_tensor.cc); with ".0" it is read as the double it is.
    if (body.find_first_of(".e", start) == std::string::npos) body += ".0";
  }
  body += "]}";
  return body;
}

predict_result parse_rest_predictions(std::string_view body, std::size_t expected) {
  constexpr unsigned flags =
      rapidjson::kParseIterativeFlag | rapidjson::kParseNumbersAsStringsFlag | rapidjson::kParseNanAndInfFlag;
  predictions_handler handler;
  rapidjson::MemoryStream stream(body.data(), body.size());
  rapidjson::Reader reader;
  const rapidjson::ParseResult ok = reader.Parse<flags>(stream, handler);
  if (ok.IsError()) {
    return model_error{model_failure::malformed, fmt::format("not JSON (offset {}: {}): {}", ok.Offset(),
                                                             rapidjson::GetParseError_En(ok.Code()), shorten(body))};
  }
  if (!handler.found_) return model_error{model_failure::malformed, "no 'predictions' array: " + shorten(body)};
  if (handler.problem_) return model_error{model_failure::malformed, *handler.problem_};
  if (handler.values_.size() != expected) {
    return model_error{model_failure::malformed,
                       fmt::format("{} predictions for {} inputs", handler.values_.size(), expected)};
  }
  return model_prediction{std::move(handler.values_), 0};
}

std::string parse_rest_error(std::string_view body) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseNanAndInfFlag>(body.data(), body.size());
  // (HasMember rather than FindMember: comparing RapidJSON 1.1's member iterators is
  // ambiguous in C++20.)
  if (!doc.HasParseError() && doc.IsObject() && doc.HasMember("error") && doc["error"].IsString()) {
    return std::string(doc["error"].GetString(), doc["error"].GetStringLength());
  }
  return shorten(body);
}

model_status parse_rest_status(std::string_view body) {
  model_status out;
  rapidjson::Document doc;
  doc.Parse(body.data(), body.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("model_version_status") ||
      !doc["model_version_status"].IsArray()) {
    out.detail = "unreadable model status: " + shorten(body);
    return out;
  }
  out.detail = "no version of the model is AVAILABLE";
  for (const auto& entry : doc["model_version_status"].GetArray()) {
    if (!entry.IsObject() || !entry.HasMember("state") || !entry["state"].IsString()) continue;
    if (std::string_view(entry["state"].GetString()) != "AVAILABLE") continue;
    std::int64_t version = 0;
    if (entry.HasMember("version") && entry["version"].IsString()) {
      const std::string_view text(entry["version"].GetString(), entry["version"].GetStringLength());
      std::from_chars(text.data(), text.data() + text.size(), version);
    } else if (entry.HasMember("version") && entry["version"].IsInt64()) {
      version = entry["version"].GetInt64();
    }
    if (!out.available || version > out.version) {
      out.available = true;
      out.version = version;
      out.detail.clear();
    }
  }
  return out;
}

std::unique_ptr<model_client> make_rest_model_client(const rest_model_options& options) {
  return std::make_unique<rest_model_client>(options);
}

}  // namespace celsius
