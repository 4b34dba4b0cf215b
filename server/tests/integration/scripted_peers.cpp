#include "scripted_peers.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <cstring>
#include <stdexcept>

#include <rapidjson/document.h>

#include "convert.hpp"
#include "json_body.hpp"
#include "json_write.hpp"
#include "tensorflow_serving.grpc.pb.h"

namespace celsius::test {

namespace tfs = tensorflow::serving;
namespace http = boost::beast::http;

namespace {

// A TCP listener on 127.0.0.1 and a free port; returns the socket, sets `port`.
int listen_loopback(std::uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 128) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot listen on 127.0.0.1");
  }
  port = ntohs(addr.sin_port);
  return fd;
}

// Waits up to `timeout` for `fd` to be readable; false on timeout.
bool readable(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
}

// accept() that gives up every 100 ms to let the caller check for shutdown; -1 then.
int accept_or_poll(int listener) {
  if (!readable(listener, std::chrono::milliseconds(100))) return -1;
  return ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
}

}  // namespace

// ---------------------------------------------------------------- gRPC

grpc::Status scripted_grpc_model_server::correct(const tfs::PredictRequest& request, tfs::PredictResponse& response) {
  if (request.model_spec().name() != "f2c") {
    return {grpc::StatusCode::NOT_FOUND, "Servable not found for request: Latest(" + request.model_spec().name() + ")"};
  }
  const auto in = request.inputs().find("fahrenheit");
  if (in == request.inputs().end()) return {grpc::StatusCode::INVALID_ARGUMENT, "no input 'fahrenheit'"};
  tensorflow::TensorProto& out = (*response.mutable_outputs())["celsius"];
  out.set_dtype(tensorflow::DT_DOUBLE);
  out.mutable_tensor_shape()->add_dim()->set_size(in->second.double_val_size());
  for (const double f : in->second.double_val()) out.add_double_val(to_celsius(f));
  response.mutable_model_spec()->set_name("f2c");
  response.mutable_model_spec()->mutable_version()->set_value(1);
  response.mutable_model_spec()->set_signature_name("serving_default");
  return grpc::Status::OK;
}

struct scripted_grpc_model_server::services {
  class prediction final : public tfs::PredictionService::Service {
   public:
    prediction(predict_handler handler, std::atomic<std::size_t>& calls)
        : handler_(std::move(handler)), calls_(calls) {}
    grpc::Status Predict(grpc::ServerContext* /*context*/, const tfs::PredictRequest* request,
                         tfs::PredictResponse* response) override {
      ++calls_;
      return handler_ ? handler_(*request, *response) : correct(*request, *response);
    }

   private:
    predict_handler handler_;
    std::atomic<std::size_t>& calls_;
  };
  class models final : public tfs::ModelService::Service {
   public:
    grpc::Status GetModelStatus(grpc::ServerContext* /*context*/, const tfs::GetModelStatusRequest* request,
                                tfs::GetModelStatusResponse* response) override {
      if (request->model_spec().name() != "f2c") {
        return {grpc::StatusCode::NOT_FOUND,
                "Servable not found for request: Latest(" + request->model_spec().name() + ")"};
      }
      auto* status = response->add_model_version_status();
      status->set_version(1);
      status->set_state(tfs::ModelVersionStatus::AVAILABLE);
      return grpc::Status::OK;
    }
  };
  services(predict_handler handler, std::atomic<std::size_t>& calls) : predict(std::move(handler), calls) {}
  prediction predict;
  models status;
};

scripted_grpc_model_server::scripted_grpc_model_server(options how)
    : services_(std::make_unique<services>(std::move(how.predict), predict_calls_)) {
  grpc::ServerBuilder builder;
  int port = 0;
  const std::string host = how.host.find(':') != std::string::npos ? "[" + how.host + "]" : how.host;
  builder.AddListeningPort(host + ":" + std::to_string(how.port), grpc::InsecureServerCredentials(), &port);
  if (how.max_connection_age.count() > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, static_cast<int>(how.max_connection_age.count()));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, 5000);
  }
  builder.RegisterService(&services_->predict);
  builder.RegisterService(&services_->status);
  server_ = builder.BuildAndStart();
  if (!server_ || port == 0) throw std::runtime_error("scripted gRPC model server did not start on " + host);
  port_ = static_cast<std::uint16_t>(port);
}

scripted_grpc_model_server::~scripted_grpc_model_server() {
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  server_->Wait();
}

// ---------------------------------------------------------------- REST

scripted_rest_model_server::reply scripted_rest_model_server::correct(std::string_view request_body) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseNumbersAsStringsFlag>(request_body.data(), request_body.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("instances") || !doc["instances"].IsArray()) {
    return {400, R"({"error": "Missing 'inputs' or 'instances' key"})"};
  }
  std::string body = R"({"predictions": [)";
  bool first = true;
  for (const auto& v : doc["instances"].GetArray()) {
    double f = 0;
    if (!v.IsString() || !parse_double({v.GetString(), v.GetStringLength()}, f)) {
      return {400, R"({"error": "instances: not a number"})"};
    }
    if (!first) body += ", ";
    first = false;
    append_json_number(body, to_celsius(f));
  }
  return {200, body + "]}"};
}

scripted_rest_model_server::scripted_rest_model_server(options how) : options_(std::move(how)) {
  listener_ = listen_loopback(port_);
  acceptor_ = std::thread([this] { accept_loop(); });
}

scripted_rest_model_server::~scripted_rest_model_server() {
  stopping_ = true;
  acceptor_.join();
  {
    std::lock_guard lock(mutex_);
    for (const int fd : open_) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : threads_) t.join();
  ::close(listener_);
}

void scripted_rest_model_server::accept_loop() {
  while (!stopping_) {
    const int fd = accept_or_poll(listener_);
    if (fd < 0) continue;
    ++accepted_;
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::lock_guard lock(mutex_);
    open_.push_back(fd);
    threads_.emplace_back([this, fd] { serve(fd); });
  }
}

void scripted_rest_model_server::serve(int fd) {
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::socket socket(ioc);
  boost::beast::error_code ec;
  socket.assign(boost::asio::ip::tcp::v4(), fd, ec);
  boost::beast::flat_buffer buffer;
  std::size_t answered = 0;
  while (!stopping_ && !ec) {
    if (buffer.size() == 0 && options_.idle_close.count() > 0 && !readable(fd, options_.idle_close)) {
      ++idle_closes_;  // idle too long: close without having said so (no Connection: close)
      break;
    }
    http::request<http::string_body> req;
    http::read(socket, buffer, req, ec);
    if (ec) break;
    if (options_.answers_per_connection != 0 && answered == options_.answers_per_connection) {
      ++dropped_;  // read, never answered: the client sees the connection close
      break;
    }
    ++answered;
    http::response<http::string_body> res;
    res.version(11);
    res.set(http::field::content_type, "application/json");
    const std::string_view target = req.target();
    if (req.method() == http::verb::get && target == "/v1/models/f2c") {
      res.result(200);
      res.body() = R"({"model_version_status": [{"version": "1", "state": "AVAILABLE",)"
                   R"( "status": {"error_code": "OK", "error_message": ""}}]})";
    } else if (req.method() == http::verb::post && target == "/v1/models/f2c:predict") {
      ++predict_calls_;
      const reply r = options_.predict ? options_.predict(req.body()) : correct(req.body());
      res.result(r.status);
      res.body() = r.body;
    } else {
      res.result(404);
      res.body() = R"x({"error": "Servable not found for request: Latest(unknown)"})x";
    }
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    http::write(socket, res, ec);
    if (!req.keep_alive()) break;
  }
  std::lock_guard lock(mutex_);
  std::erase(open_, fd);
  socket.close(ec);
}

// ---------------------------------------------------------------- delayed accept

delayed_accept_proxy::delayed_accept_proxy(std::uint16_t target, std::chrono::milliseconds delay)
    : target_(target), delay_(delay) {
  listener_ = listen_loopback(port_);
  acceptor_ = std::thread([this] { accept_loop(); });
}

delayed_accept_proxy::~delayed_accept_proxy() {
  stopping_ = true;
  acceptor_.join();
  {
    std::lock_guard lock(mutex_);
    for (const int fd : open_) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : threads_) t.join();
  ::close(listener_);
}

void delayed_accept_proxy::accept_loop() {
  while (!stopping_) {
    // Each connection waits in the backlog (the handshake done by the kernel) for the delay.
    if (!readable(listener_, std::chrono::milliseconds(100))) continue;
    const auto until = std::chrono::steady_clock::now() + delay_;
    while (!stopping_ && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const int client = accept_or_poll(listener_);
    if (client < 0) continue;
    const int upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(target_);
    if (::connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(upstream);
      ::close(client);
      continue;
    }
    std::lock_guard lock(mutex_);
    open_.push_back(client);
    open_.push_back(upstream);
    threads_.emplace_back([this, client, upstream] {
      std::array<pollfd, 2> fds{pollfd{client, POLLIN, 0}, pollfd{upstream, POLLIN, 0}};
      std::array<char, 16384> buf;
      bool open = true;
      while (open && ::poll(fds.data(), fds.size(), -1) > 0) {
        for (std::size_t i = 0; i < 2 && open; ++i) {
          if (fds[i].revents == 0) continue;
          const ssize_t n = ::read(fds[i].fd, buf.data(), buf.size());
          open = n > 0 && ::send(fds[1 - i].fd, buf.data(), static_cast<std::size_t>(n), MSG_NOSIGNAL) == n;
        }
      }
      std::lock_guard guard(mutex_);
      std::erase(open_, client);
      std::erase(open_, upstream);
      ::close(client);
      ::close(upstream);
    });
  }
}

// ---------------------------------------------------------------- DNS

namespace {
std::vector<std::uint32_t> parse_ipv4(const std::vector<std::string>& addresses) {
  std::vector<std::uint32_t> out;
  for (const auto& a : addresses) {
    in_addr addr{};
    if (::inet_pton(AF_INET, a.c_str(), &addr) != 1) throw std::runtime_error("not an IPv4 address: " + a);
    out.push_back(addr.s_addr);
  }
  return out;
}
}  // namespace

test_dns_server::test_dns_server(std::vector<std::string> ipv4_addresses) : addresses_(parse_ipv4(ipv4_addresses)) {
  socket_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (socket_ < 0 || ::bind(socket_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(socket_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw std::runtime_error("cannot bind a UDP socket on 127.0.0.1");
  }
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { loop(); });
}

test_dns_server::~test_dns_server() {
  stopping_ = true;
  thread_.join();
  ::close(socket_);
}

void test_dns_server::set_addresses(std::vector<std::string> ipv4_addresses) {
  auto parsed = parse_ipv4(ipv4_addresses);
  std::lock_guard lock(mutex_);
  addresses_ = std::move(parsed);
}

// RFC 1035 section 4: a 12-byte header, the question (labels, QTYPE, QCLASS), answers.
void test_dns_server::loop() {
  std::array<unsigned char, 512> query;
  while (!stopping_) {
    if (!readable(socket_, std::chrono::milliseconds(100))) continue;
    sockaddr_in from{};
    socklen_t from_len = sizeof from;
    const ssize_t n = ::recvfrom(socket_, query.data(), query.size(), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (n < 12) continue;
    ++queries_;
    std::size_t at = 12;  // skip the name's labels
    while (at < static_cast<std::size_t>(n) && query[at] != 0) at += query[at] + 1u;
    if (at + 5 > static_cast<std::size_t>(n)) continue;
    const std::size_t question_end = at + 5;
    const unsigned qtype = (query[at + 1] << 8) | query[at + 2];
    std::vector<std::uint32_t> answers;
    unsigned rcode = 0;
    if (qtype == 1) {
      std::lock_guard lock(mutex_);
      answers = addresses_;
    } else if (qtype != 28) {
      rcode = 4;  // NOTIMP (only A and AAAA are answered)
    }
    std::vector<unsigned char> reply(query.begin(), query.begin() + static_cast<std::ptrdiff_t>(question_end));
    reply[2] = static_cast<unsigned char>(0x80 | (query[2] & 0x79) | 0x04);  // QR, opcode and RD copied, AA
    reply[3] = static_cast<unsigned char>(0x80 | rcode);                     // RA, rcode
    reply[6] = 0;
    reply[7] = static_cast<unsigned char>(answers.size());  // ANCOUNT
    reply[8] = reply[9] = reply[10] = reply[11] = 0;        // no authority or additional records
    for (const std::uint32_t a : answers) {
      const std::array<unsigned char, 12> record{0xC0, 12,        // the question's name
                                                 0,    1,         // TYPE A
                                                 0,    1,         // CLASS IN
                                                 0,    0,  0, 0,  // TTL 0
                                                 0,    4};
      reply.insert(reply.end(), record.begin(), record.end());
      const auto* bytes = reinterpret_cast<const unsigned char*>(&a);
      reply.insert(reply.end(), bytes, bytes + 4);
    }
    ::sendto(socket_, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), from_len);
  }
}

}  // namespace celsius::test
