#include "http_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace celsius::test {

namespace http = boost::beast::http;

connection::connection(std::uint16_t port, std::chrono::milliseconds timeout) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error("socket failed");
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd_);
    throw std::runtime_error("connect failed: " + std::string(strerror(errno)));
  }
}

connection::~connection() {
  if (fd_ >= 0) ::close(fd_);
}

void connection::send(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error("send failed: " + std::string(strerror(errno)));
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::optional<http_response> connection::read_response(bool head) {
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  parser.eager(true);
  parser.skip(head);
  for (;;) {
    if (!buffer_.empty()) {
      boost::beast::error_code ec;
      const std::size_t used = parser.put(boost::asio::buffer(buffer_), ec);
      buffer_.erase(0, used);
      if (ec && ec != http::error::need_more) throw std::runtime_error("bad response: " + ec.message());
      if (parser.is_done()) break;
      if (used > 0 && !ec) continue;
    }
    char chunk[65536];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0 && parser.got_some() && parser.need_eof()) {
        boost::beast::error_code ec;
        parser.put_eof(ec);
        if (!ec) break;
      }
      return std::nullopt;
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
  const auto& msg = parser.get();
  http_response out;
  out.status = msg.result_int();
  out.body = msg.body();
  out.keep_alive = msg.keep_alive();
  for (const auto& field : msg) {
    std::string name(field.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[name] = std::string(field.value());
  }
  return out;
}

bool connection::closed_by_peer() {
  char c;
  for (;;) {
    const ssize_t n = ::recv(fd_, &c, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET;
    buffer_ += c;  // unexpected data: keep it, report open
    return false;
  }
}

std::string request(std::string_view method, std::string_view target, std::string_view body,
                    std::string_view content_type, std::string_view extra_headers) {
  std::string out;
  out.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  if (!body.empty() || method == "POST") {
    if (!content_type.empty()) out.append("Content-Type: ").append(content_type).append("\r\n");
    out.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  }
  out.append(extra_headers);
  out.append("\r\n").append(body);
  return out;
}

http_response fetch(std::uint16_t port, std::string_view method, std::string_view target, std::string_view body,
                    std::string_view content_type, std::string_view extra_headers) {
  connection c(port);
  c.send(request(method, target, body, content_type, extra_headers));
  auto response = c.read_response();
  if (!response) throw std::runtime_error("no response");
  return *response;
}

}  // namespace celsius::test
