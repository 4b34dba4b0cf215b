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

void append_json_string(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
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
        } else {
          out += ch;
        }
    }
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
