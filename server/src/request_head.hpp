#pragma once

#include <boost/beast/http/message.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "errors.hpp"

namespace celsius {

// The RFC 9112 rules for a request head that Beast's parser (Boost 1.74) leaves to the
// server, checked once the head has been parsed and before any byte of the body is read.
// A non-empty result is the error to answer with; the connection must then be closed,
// because the body's framing cannot be trusted (the unread bytes could otherwise be
// parsed as a next request: request smuggling).
//
// - Host (RFC 9112 section 3.2): an HTTP/1.1 request without one, any request with more
//   than one, or one whose value is not `uri-host [":" port]` -> 400 bad_request.
// - Transfer-Encoding (RFC 9112 sections 6.1, 6.3, 7): in an HTTP/1.0 request, together with
//   Content-Length, empty or malformed, a final coding other than `chunked`, or `chunked`
//   more than once -> 400 bad_request; a well-formed list ending in `chunked` that also names
//   a coding this service does not implement (gzip, deflate, compress, ... ; only chunked is
//   implemented) -> 501 not_implemented. `chunked_framing` is whether the parser reads the
//   body as chunked: a Transfer-Encoding that passes these rules always must.
// - Content-Length: Beast already refuses values that are not 1*DIGIT, overflow, or lists
//   and repeated fields whose values differ (RFC 9112 section 6.3, item 5), with a parse
//   error that the transport answers with 400 and a close; repeated identical values are
//   accepted as one, as that item allows.
std::optional<api_error> check_request_head(const boost::beast::http::request_header<>& head, bool chunked_framing);

// True when `value` is a valid Host field value: `uri-host [":" port]` (RFC 9110 section 7.2,
// RFC 3986 section 3.2.2), where uri-host is an IP-literal in brackets, or a reg-name /
// IPv4address (unreserved, pct-encoded and sub-delims characters); empty is allowed.
bool is_valid_host(std::string_view value) noexcept;

// The origin-form of a request target: an absolute-form target (`http://host:port/p?q`,
// which servers must accept, RFC 9112 section 3.2.2) becomes `/p?q`; every other target is
// returned unchanged. The result views `target`, or `storage` when the absolute form had
// an empty path and "/" had to be put in front of its query.
std::string_view origin_form(std::string_view target, std::string& storage);

}  // namespace celsius
