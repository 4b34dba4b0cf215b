#include "json_write.hpp"

#include <array>
#include <cassert>
#include <charconv>
#include <cmath>

namespace celsius {

void append_json_number(std::string& out, double value) {
  assert(std::isfinite(value));
  if (value == 0 && std::signbit(value)) {
    // to_chars gives "-0", which parsers that tell integers from floats (Python's json)
    // read as the integer 0, losing the sign.
    out += "-0.0";
    return;
  }
  std::array<char, 32> buf;  // shortest round-trip double text is at most 24 chars
  const auto result = std::to_chars(buf.data(), buf.data() + buf.size(), value);
  out.append(buf.data(), result.ptr);
}

namespace {

// Bytes that may follow `lead` as the second byte of a well-formed UTF-8 sequence
// (Unicode 15, table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF).
struct second_byte_range {
  unsigned char low, high;
};
constexpr second_byte_range second_byte_for(unsigned char lead) noexcept {
  if (lead == 0xe0) return {0xa0, 0xbf};
  if (lead == 0xed) return {0x80, 0x9f};
  if (lead == 0xf0) return {0x90, 0xbf};
  if (lead == 0xf4) return {0x80, 0x8f};
  return {0x80, 0xbf};
}

// Length of the sequence a lead byte starts (0: it starts none: 80-C1, F5-FF).
constexpr std::size_t sequence_length(unsigned char lead) noexcept {
  if (lead >= 0xc2 && lead <= 0xdf) return 2;
  if (lead >= 0xe0 && lead <= 0xef) return 3;
  if (lead >= 0xf0 && lead <= 0xf4) return 4;
  return 0;
}

}  // namespace

utf8_sequence next_utf8_sequence(std::string_view text) noexcept {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  if (text.empty()) return {0, false};
  const unsigned char lead = byte(0);
  if (lead < 0x80) return {1, true};
  const std::size_t length = sequence_length(lead);
  if (length == 0) return {1, false};
  // The maximal subpart: the lead byte and every following byte that could still
  // continue a well-formed sequence, up to the first that cannot (which is not consumed).
  std::size_t i = 1;
  const second_byte_range second = second_byte_for(lead);
  if (i < text.size() && byte(i) >= second.low && byte(i) <= second.high) {
    ++i;
    while (i < length && i < text.size() && byte(i) >= 0x80 && byte(i) <= 0xbf) ++i;
  }
  return {i, i == length};
}

void append_json_string(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  while (!text.empty()) {
    const auto c = static_cast<unsigned char>(text.front());
    std::size_t used = 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xf];
        } else if (c < 0x80) {
          out += static_cast<char>(c);
        } else {
          const utf8_sequence sequence = next_utf8_sequence(text);
          used = sequence.length;
          if (sequence.valid) {
            out.append(text.data(), used);
          } else {
            out += "\xef\xbf\xbd";  // U+FFFD REPLACEMENT CHARACTER
          }
        }
    }
    text.remove_prefix(used);
  }
  out += '"';
}

namespace {
void append_app_id(std::string& out, std::string_view app_id) {
  out += R"(,"app_id":")";
  out += app_id;  // a UUID: no escaping needed
  out += "\"}";
}

void append_array(std::string& out, std::span<const double> values) {
  out += '[';
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i != 0) out += ',';
    append_json_number(out, values[i]);
  }
  out += ']';
}
}  // namespace

std::string convert_body(double fahrenheit, double celsius, std::string_view app_id) {
  std::string out;
  out.reserve(112);
  out += R"({"fahrenheit":)";
  append_json_number(out, fahrenheit);
  out += R"(,"celsius":)";
  append_json_number(out, celsius);
  append_app_id(out, app_id);
  return out;
}

std::string convert_batch_body(std::span<const double> fahrenheit, std::span<const double> celsius,
                               std::string_view app_id) {
  std::string out;
  out.reserve(80 + 50 * fahrenheit.size());
  out += R"({"fahrenheit":)";
  append_array(out, fahrenheit);
  out += R"(,"celsius":)";
  append_array(out, celsius);
  append_app_id(out, app_id);
  return out;
}

}  // namespace celsius
