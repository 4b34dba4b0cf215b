#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace celsius {

// Appends the shortest decimal text that reads back as exactly `value`
// (std::to_chars); negative zero is "-0.0" so that parsers reading "-0" as an integer keep
// its sign. `value` must be finite: JSON has no NaN or infinities.
void append_json_number(std::string& out, double value);

// Appends `text` as a quoted JSON string, escaping quotes, backslashes and control
// characters. The result is always valid UTF-8 (RFC 8259 section 8.1), whatever `text`
// holds: well-formed UTF-8 passes through unchanged; each ill-formed part (a stray
// continuation byte, an overlong form such as C0 AF, a surrogate, a truncated sequence,
// F5-FF) becomes U+FFFD, one per maximal subpart (Unicode 15, section 3.9, "U+FFFD
// Substitution of Maximal Subparts"), so foreign bytes from a request (path, query,
// headers) or a model server can never make a body or a log line invalid.
void append_json_string(std::string& out, std::string_view text);

// The UTF-8 sequence at the start of non-empty `text`: `length` bytes (1-4), `valid` when
// they form a well-formed character (Unicode 15, table 3-7); when not, `length` covers the
// maximal subpart (at least 1 byte). {0, false} for empty `text`.
struct utf8_sequence {
  std::size_t length;
  bool valid;
};
utf8_sequence next_utf8_sequence(std::string_view text) noexcept;

// {"fahrenheit":F,"celsius":C,"app_id":"..."}
std::string convert_body(double fahrenheit, double celsius, std::string_view app_id);

// {"fahrenheit":[...],"celsius":[...],"app_id":"..."}
std::string convert_batch_body(std::span<const double> fahrenheit, std::span<const double> celsius,
                               std::string_view app_id);

}  // namespace celsius
