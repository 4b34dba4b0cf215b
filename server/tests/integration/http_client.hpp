#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace celsius::test {

struct http_response {
  unsigned status = 0;
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;
  bool keep_alive = true;
  std::string header(const std::string& name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// A blocking HTTP/1.1 client on a plain POSIX socket with a receive timeout, so a
// misbehaving server fails a test instead of hanging it. Sends raw bytes, so tests can
// send anything (pipelined, partial, malformed).
class connection {
 public:
  explicit connection(std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  void send(std::string_view bytes);
  // Reads one response; nullopt when the server closed or the timeout passed first.
  // `head`: the response to a HEAD request, which has no body whatever its headers say.
  std::optional<http_response> read_response(bool head = false);
  // True when the server has closed the connection (reads EOF or reset within the timeout).
  bool closed_by_peer();
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  std::string buffer_;  // bytes received but not yet parsed
};

std::string request(std::string_view method, std::string_view target, std::string_view body = {},
                    std::string_view content_type = "application/json", std::string_view extra_headers = {});

// One request on a fresh connection.
http_response fetch(std::uint16_t port, std::string_view method, std::string_view target, std::string_view body = {},
                    std::string_view content_type = "application/json", std::string_view extra_headers = {});

}  // namespace celsius::test
