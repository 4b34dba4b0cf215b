// RFC 9112 checks of request heads, through Beast's real parser (as the transport uses it).
#include "request_head.hpp"

#include <gtest/gtest.h>

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <string>

namespace celsius {
namespace {

namespace http = boost::beast::http;

// What the service makes of a request head: Beast's parse error (answered 400 and close),
// or check_request_head's verdict.
struct verdict {
  bool parse_error = false;
  std::optional<api_error> problem;
  bool chunked = false;
};

verdict judge(const std::string& head) {
  http::request_parser<http::string_body> parser;
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(head), ec);
  verdict v;
  if (ec || !parser.is_header_done()) {
    v.parse_error = true;
    return v;
  }
  v.chunked = parser.chunked();
  v.problem = check_request_head(parser.get(), parser.chunked());
  return v;
}

std::string post_with(const std::string& headers) {
  return "POST /convert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + headers + "\r\n";
}

unsigned status_of(const verdict& v) {
  if (v.parse_error) return 400;
  return v.problem ? http_status(v.problem->code) : 200;
}

TEST(request_head, a_plain_request_passes) {
  EXPECT_EQ(status_of(judge(post_with("Content-Length: 5\r\n"))), 200u);
  EXPECT_EQ(status_of(judge("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n")), 200u);
  const auto chunked = judge(post_with("Transfer-Encoding: chunked\r\n"));
  EXPECT_EQ(status_of(chunked), 200u);
  EXPECT_TRUE(chunked.chunked);
  EXPECT_EQ(status_of(judge(post_with("Transfer-Encoding: Chunked\r\n"))), 200u);  // case-insensitive
}

// Issue 10, item 4: each of these was answered with the connection left open and the body
// then parsed as the next request (a hidden GET /convert?fahrenheit=212 was answered).
TEST(request_head, a_final_coding_other_than_chunked_is_400) {
  for (const char* te : {"gzip", "xchunked", "identity", "chunked, identity", "chunked, gzip", "deflate", "chunkedx"}) {
    const auto v = judge(post_with(std::string("Transfer-Encoding: ") + te + "\r\n"));
    EXPECT_EQ(status_of(v), 400u) << te;
    if (v.problem) EXPECT_EQ(v.problem->code, error_code::bad_request) << te;
  }
}

TEST(request_head, a_coding_we_do_not_implement_is_501) {
  for (const char* te : {"gzip, chunked", "deflate, chunked", "compress,chunked", "x-custom ,  chunked",
                         "gzip;q=1, chunked", "identity, chunked"}) {
    const auto v = judge(post_with(std::string("Transfer-Encoding: ") + te + "\r\n"));
    ASSERT_TRUE(v.problem.has_value()) << te;
    EXPECT_EQ(v.problem->code, error_code::not_implemented) << te;
    EXPECT_EQ(http_status(v.problem->code), 501u) << te;
  }
  // Codings split over two field lines are one list (RFC 9110 section 5.3).
  const auto v = judge(post_with("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"));
  ASSERT_TRUE(v.problem.has_value());
  EXPECT_EQ(v.problem->code, error_code::not_implemented);
}

TEST(request_head, malformed_or_repeated_chunked_is_400) {
  for (const std::string headers :
       {"Transfer-Encoding: chunked, chunked\r\n", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked;x=1\r\n", "Transfer-Encoding: ,\r\n", "Transfer-Encoding: \r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n", "Transfer-Encoding: \"chunked\"\r\n",
        "Transfer-Encoding: gzip;\r\n", "Transfer-Encoding: gzip;q\r\n", "Transfer-Encoding: chu nked\r\n"}) {
    EXPECT_EQ(status_of(judge(post_with(headers))), 400u) << headers;
  }
}

TEST(request_head, transfer_encoding_with_content_length_is_400) {
  for (const std::string headers :
       {"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n", "Content-Length: 5\r\nTransfer-Encoding: gzip\r\n"}) {
    EXPECT_EQ(status_of(judge(post_with(headers))), 400u) << headers;
  }
}

TEST(request_head, transfer_encoding_in_http10_is_400) {
  EXPECT_EQ(status_of(judge("POST /convert HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n")), 400u);
}

TEST(request_head, content_length_follows_rfc9112_section_6_3) {
  for (const std::string headers :
       {"Content-Length: 5, 6\r\n", "Content-Length: 5\r\nContent-Length: 6\r\n", "Content-Length: -1\r\n",
        "Content-Length: +5\r\n", "Content-Length: 5x\r\n", "Content-Length: \r\n", "Content-Length: 0x10\r\n",
        "Content-Length: 99999999999999999999999\r\n", "Content-Length: 1 2\r\n"}) {
    EXPECT_EQ(status_of(judge(post_with(headers))), 400u) << headers;
  }
  // The same value repeated is one value (RFC 9112 section 6.3, item 5).
  for (const std::string headers : {"Content-Length: 5, 5\r\n", "Content-Length: 5\r\nContent-Length: 5\r\n"}) {
    EXPECT_EQ(status_of(judge(post_with(headers))), 200u) << headers;
  }
}

// Issue 10, item 8: both were answered 200.
TEST(request_head, host_is_required_once_in_http11) {
  EXPECT_EQ(status_of(judge("GET /healthz HTTP/1.1\r\n\r\n")), 400u);
  EXPECT_EQ(status_of(judge("GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")), 400u);
  EXPECT_EQ(status_of(judge("GET /healthz HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n")), 400u);
  EXPECT_EQ(status_of(judge("GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n")), 400u);
  EXPECT_EQ(status_of(judge("GET /healthz HTTP/1.0\r\n\r\n")), 200u);           // HTTP/1.0 needs none
  EXPECT_EQ(status_of(judge("GET /healthz HTTP/1.1\r\nHost:\r\n\r\n")), 200u);  // empty is valid
  EXPECT_EQ(status_of(judge("GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n")), 400u);
  const auto v = judge("GET /healthz HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(v.problem.has_value());
  EXPECT_NE(v.problem->message.find("Host"), std::string::npos);
}

TEST(request_head, host_values) {
  for (const char* good : {"", "example.com", "example.com:8080", "127.0.0.1", "127.0.0.1:", "[::1]", "[::1]:8000",
                           "celsius.default.svc.cluster.local:80", "xn--bcher-kva.example", "a%20b", "[v1.fe80::a]"}) {
    EXPECT_TRUE(is_valid_host(good)) << good;
  }
  for (const char* bad : {"a b", "a/b", "a:b", "a:80:80", "[::1", "[]", "[::1]x", "[::1]:x", "a@b", "a%2", "a%zz",
                          "\xff", "a\\b", "a?b", "a#b"}) {
    EXPECT_FALSE(is_valid_host(bad)) << bad;
  }
}

TEST(request_head, absolute_form_targets_become_origin_form) {
  std::string storage;
  EXPECT_EQ(origin_form("/convert?fahrenheit=1", storage), "/convert?fahrenheit=1");
  EXPECT_EQ(origin_form("http://127.0.0.1:8000/convert?fahrenheit=1", storage), "/convert?fahrenheit=1");
  EXPECT_EQ(origin_form("HTTP://example.com/healthz", storage), "/healthz");
  EXPECT_EQ(origin_form("https://example.com", storage), "/");
  EXPECT_EQ(origin_form("http://example.com?fahrenheit=1", storage), "/?fahrenheit=1");
  EXPECT_EQ(origin_form("*", storage), "*");
  EXPECT_EQ(origin_form("example.com:443", storage), "example.com:443");
}

}  // namespace
}  // namespace celsius
