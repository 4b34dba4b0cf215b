#include "request_head.hpp"

#include <fmt/format.h>

#include <boost/beast/core/string.hpp>
#include <string>
#include <vector>

namespace celsius {

namespace http = boost::beast::http;

namespace {

constexpr bool is_alpha(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
constexpr bool is_hex(char c) noexcept { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// tchar (RFC 9110 section 5.6.2).
constexpr bool is_tchar(char c) noexcept {
  return is_alpha(c) || is_digit(c) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// unreserved / sub-delims (RFC 3986 section 2); '%' is checked separately.
constexpr bool is_reg_name_char(char c) noexcept {
  return is_alpha(c) || is_digit(c) || std::string_view("-._~!$&'()*+,;=").find(c) != std::string_view::npos;
}

constexpr bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

// A field value quoted into a message: at most 64 bytes (the JSON writer makes it valid UTF-8).
std::string quote(std::string_view value) {
  std::string out(1, '\'');
  out.append(value.substr(0, 64));
  out.append(value.size() > 64 ? "...'" : "'");
  return out;
}

// One element of a Transfer-Encoding list: `token *( OWS ";" OWS token "=" ( token / quoted-string ) )`
// (RFC 9112 section 6.1, RFC 9110 section 5.6.6). Sets the coding's name (lowercase) and
// whether it had parameters; false on a syntax error.
bool parse_coding(std::string_view element, std::string& name, bool& has_parameters) {
  std::size_t i = 0;
  while (i < element.size() && is_tchar(element[i])) ++i;
  if (i == 0) return false;
  name.clear();
  for (const char c : element.substr(0, i)) name += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  has_parameters = false;
  std::string_view rest = element.substr(i);
  for (;;) {
    rest = trim_ows(rest);
    if (rest.empty()) return true;
    if (rest.front() != ';') return false;
    has_parameters = true;
    rest = trim_ows(rest.substr(1));
    std::size_t n = 0;
    while (n < rest.size() && is_tchar(rest[n])) ++n;
    if (n == 0 || n == rest.size() || rest[n] != '=') return false;
    rest.remove_prefix(n + 1);
    if (!rest.empty() && rest.front() == '"') {
      std::size_t q = 1;
      for (; q < rest.size() && rest[q] != '"'; ++q) {
        if (rest[q] == '\\') ++q;  // quoted-pair
      }
      if (q >= rest.size()) return false;
      rest.remove_prefix(q + 1);
    } else {
      n = 0;
      while (n < rest.size() && is_tchar(rest[n])) ++n;
      if (n == 0) return false;
      rest.remove_prefix(n);
    }
  }
}

std::optional<api_error> check_host(const http::request_header<>& head) {
  const auto count = head.count(http::field::host);
  if (count > 1) {
    return api_error{error_code::bad_request, "more than one Host header (RFC 9112 section 3.2)"};
  }
  if (count == 0) {
    if (head.version() >= 11) {
      return api_error{error_code::bad_request, "an HTTP/1.1 request must have a Host header (RFC 9112 section 3.2)"};
    }
    return std::nullopt;
  }
  const std::string_view value = head[http::field::host];
  if (!is_valid_host(value)) {
    return api_error{error_code::bad_request, "invalid Host header " + quote(value) + " (RFC 9112 section 3.2)"};
  }
  return std::nullopt;
}

std::optional<api_error> check_transfer_encoding(const http::request_header<>& head, bool chunked_framing) {
  const auto range = head.equal_range(http::field::transfer_encoding);
  if (range.first == range.second) return std::nullopt;
  if (head.version() < 11) {
    return api_error{error_code::bad_request,
                     "Transfer-Encoding in an HTTP/1.0 request: framing is faulty (RFC 9112 section 6.1)"};
  }
  if (head.count(http::field::content_length) != 0) {
    return api_error{error_code::bad_request,
                     "both Transfer-Encoding and Content-Length: the body length is ambiguous (RFC 9112 section 6.3)"};
  }
  // Every field line's elements, in order: one list (RFC 9110 section 5.3).
  std::vector<std::string> codings;
  std::string name;
  for (auto it = range.first; it != range.second; ++it) {
    std::string_view value = it->value();
    while (true) {
      const auto comma = value.find(',');
      const std::string_view element = trim_ows(value.substr(0, comma));
      if (!element.empty()) {  // empty list elements are allowed and ignored (RFC 9110 section 5.6.1)
        bool has_parameters = false;
        if (!parse_coding(element, name, has_parameters)) {
          return api_error{error_code::bad_request,
                           "malformed Transfer-Encoding " + quote(it->value()) + " (RFC 9112 section 6.1)"};
        }
        if (name == "chunked" && has_parameters) {
          return api_error{error_code::bad_request,
                           "the chunked transfer coding takes no parameters (RFC 9112 section 7)"};
        }
        codings.push_back(name);
      }
      if (comma == std::string_view::npos) break;
      value.remove_prefix(comma + 1);
    }
  }
  if (codings.empty()) {
    return api_error{error_code::bad_request, "empty Transfer-Encoding (RFC 9112 section 6.1)"};
  }
  if (codings.back() != "chunked") {
    return api_error{error_code::bad_request,
                     fmt::format("the final transfer coding is '{}', not chunked: the body length cannot be "
                                 "determined (RFC 9112 section 6.3)",
                                 codings.back().substr(0, 64))};
  }
  for (std::size_t i = 0; i + 1 < codings.size(); ++i) {
    if (codings[i] == "chunked") {
      return api_error{error_code::bad_request, "chunked applied more than once (RFC 9112 section 7)"};
    }
  }
  if (codings.size() > 1) {
    return api_error{error_code::not_implemented,
                     fmt::format("transfer coding '{}' is not implemented; only chunked is (RFC 9112 section 6.1)",
                                 codings.front().substr(0, 64))};
  }
  if (!chunked_framing) {
    // Beast reads a body as chunked only when its own reading of the field agrees; never
    // let the two readings differ (that difference is what smuggling exploits).
    return api_error{error_code::bad_request,
                     "Transfer-Encoding " + quote(range.first->value()) + " is not supported as sent"};
  }
  return std::nullopt;
}

}  // namespace

bool is_valid_host(std::string_view value) noexcept {
  std::string_view host = value;
  std::string_view port;
  if (!host.empty() && host.front() == '[') {
    // IP-literal: "[" ( IPv6address / IPvFuture ) "]"; checked for its character set.
    const auto close = host.find(']');
    if (close == std::string_view::npos || close < 2) return false;
    for (const char c : host.substr(1, close - 1)) {
      if (!is_hex(c) && c != ':' && c != '.' && !is_reg_name_char(c)) return false;
    }
    port = host.substr(close + 1);
    if (!port.empty() && port.front() != ':') return false;
  } else {
    const auto colon = host.find(':');
    if (colon != std::string_view::npos) {
      port = host.substr(colon);
      host = host.substr(0, colon);
    }
    for (std::size_t i = 0; i < host.size(); ++i) {
      if (host[i] == '%') {
        if (i + 2 >= host.size() || !is_hex(host[i + 1]) || !is_hex(host[i + 2])) return false;
        i += 2;
      } else if (!is_reg_name_char(host[i])) {
        return false;
      }
    }
  }
  if (!port.empty()) {
    port.remove_prefix(1);  // the ':'; port = *DIGIT, so it may be empty
    for (const char c : port) {
      if (!is_digit(c)) return false;
    }
  }
  return true;
}

std::string_view origin_form(std::string_view target, std::string& storage) {
  std::size_t scheme_length = 0;
  if (boost::beast::iequals(target.substr(0, 7), "http://")) {
    scheme_length = 7;
  } else if (boost::beast::iequals(target.substr(0, 8), "https://")) {
    scheme_length = 8;
  } else {
    return target;
  }
  const std::string_view rest = target.substr(scheme_length);
  const auto path = rest.find_first_of("/?#");
  if (path == std::string_view::npos) return "/";
  if (rest[path] == '/') return rest.substr(path);
  storage.assign(1, '/');
  storage.append(rest.substr(path));
  return storage;
}

std::optional<api_error> check_request_head(const http::request_header<>& head, bool chunked_framing) {
  if (auto problem = check_host(head)) return problem;
  return check_transfer_encoding(head, chunked_framing);
}

}  // namespace celsius
