#include "json_body.hpp"

#include <fmt/format.h>
#include <rapidjson/error/en.h>
#include <rapidjson/reader.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>

#include "convert.hpp"

namespace celsius {

bool parse_double(std::string_view text, double& out) noexcept {
  if (text.empty()) return false;
  const char* first = text.data();
  const char* last = first + text.size();
  const auto [ptr, ec] = std::from_chars(first, last, out);
  if (ptr != last) return false;
  if (ec == std::errc()) return true;
  if (ec != std::errc::result_out_of_range) return false;
  // from_chars reports both overflow and underflow as out of range without a value;
  // strtod tells them apart (HUGE_VAL or a tiny/zero value). Rare path: copy to
  // terminate the string.
  const std::string copy(text);
  out = std::strtod(copy.c_str(), nullptr);
  return true;
}

namespace {

enum class json_kind { null, boolean, number, string, object, array };

std::string_view kind_name(json_kind kind) {
  switch (kind) {
    case json_kind::null:
      return "null";
    case json_kind::boolean:
      return "boolean";
    case json_kind::number:
      return "number";
    case json_kind::string:
      return "string";
    case json_kind::object:
      return "object";
    case json_kind::array:
      return "array";
  }
  return "value";
}

std::string field_name(std::optional<std::size_t> index) {
  return index ? fmt::format("'fahrenheit[{}]'", *index) : std::string("'fahrenheit'");
}

std::string shorten(std::string_view text) {
  constexpr std::size_t max = 40;
  return text.size() <= max ? std::string(text) : std::string(text.substr(0, max)) + "...";
}

// Validates one parsed value; the message names the field or index.
std::optional<api_error> check_value(double value, std::string_view text, std::optional<std::size_t> index) {
  const auto problem = check_fahrenheit(value);
  if (!problem) return std::nullopt;
  switch (*problem) {
    case value_problem::not_finite:
      return api_error{
          error_code::validation_error,
          fmt::format("{} must be a finite number within double range, got {}", field_name(index), shorten(text))};
    case value_problem::below_absolute_zero:
      return api_error{error_code::below_absolute_zero,
                       fmt::format("{} is {}, below absolute zero ({} F)", field_name(index), shorten(text),
                                   absolute_zero_fahrenheit)};
    case value_problem::result_overflow:
      return api_error{
          error_code::validation_error,
          fmt::format("{} is {}: too large, its Celsius value overflows a double", field_name(index), shorten(text))};
  }
  return std::nullopt;
}

// SAX handler that walks the document once, collecting values and the first problem.
// It never stops the parse for a semantic problem, so a syntax error anywhere still
// wins (400 before 422).
class convert_handler : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, convert_handler> {
 public:
  explicit convert_handler(std::size_t max_batch) : max_batch_(max_batch) {}

  bool Null() { return value(json_kind::null, "null"); }
  bool Bool(bool b) { return value(json_kind::boolean, b ? "true" : "false"); }
  bool RawNumber(const Ch* str, rapidjson::SizeType len, bool /*copy*/) { return value(json_kind::number, {str, len}); }
  bool String(const Ch* /*str*/, rapidjson::SizeType /*len*/, bool /*copy*/) {
    return value(json_kind::string, "string");
  }
  bool StartObject() {
    value(json_kind::object, "object");
    ++depth_;
    return true;
  }
  bool Key(const Ch* str, rapidjson::SizeType len, bool /*copy*/) {
    if (depth_ == 1 && root_is_object_) {
      in_field_ = std::string_view(str, len) == "fahrenheit";
      if (in_field_ && seen_field_) fail(error_code::validation_error, "duplicate member 'fahrenheit'");
    }
    return true;
  }
  bool EndObject(rapidjson::SizeType /*members*/) {
    --depth_;
    return true;
  }
  bool StartArray() {
    value(json_kind::array, "array");
    ++depth_;
    return true;
  }
  bool EndArray(rapidjson::SizeType /*elements*/) {
    if (depth_ == 2 && in_batch_) {
      in_batch_ = false;
      if (count_ == 0) fail(error_code::validation_error, "'fahrenheit' must not be an empty array");
    }
    --depth_;
    return true;
  }

  // Where the parser stopped on a number too large for its exponent check (1e400).
  std::optional<std::size_t> current_index() const {
    return in_batch_ ? std::optional<std::size_t>(count_) : std::nullopt;
  }
  bool inside_field() const { return in_field_ || in_batch_; }

  convert_parse_result finish() && {
    if (!root_is_object_ && !problem_) {
      fail(error_code::validation_error, "request body must be a JSON object");
    }
    if (count_ > max_batch_) {
      return api_error{error_code::batch_too_large,
                       fmt::format("'fahrenheit' has {} values, more than the limit of {}", count_, max_batch_)};
    }
    if (problem_) return std::move(*problem_);
    if (!seen_field_) {
      return api_error{error_code::validation_error, "missing required member 'fahrenheit'"};
    }
    return std::move(input_);
  }

 private:
  bool value(json_kind kind, std::string_view text) {
    if (depth_ == 0) {
      if (kind == json_kind::object) {
        root_is_object_ = true;
      } else {
        fail(error_code::validation_error, fmt::format("request body must be a JSON object, got {}", kind_name(kind)));
      }
    } else if (depth_ == 1 && in_field_) {
      in_field_ = false;
      seen_field_ = true;
      if (kind == json_kind::number) {
        add(text, std::nullopt);
      } else if (kind == json_kind::array) {
        in_batch_ = true;
        input_.batch = true;
      } else {
        fail(error_code::validation_error,
             fmt::format("'fahrenheit' must be a number or an array of numbers, got {}", kind_name(kind)));
      }
    } else if (depth_ == 2 && in_batch_) {
      const std::size_t index = count_;
      if (kind == json_kind::number) {
        add(text, index);
      } else {
        ++count_;
        fail(error_code::validation_error,
             fmt::format("'fahrenheit[{}]' must be a number, got {}", index, kind_name(kind)));
      }
    }
    return true;
  }

  void add(std::string_view text, std::optional<std::size_t> index) {
    ++count_;
    if (problem_ || count_ > max_batch_) return;  // the answer is already an error
    double v = 0;
    if (!parse_double(text, v)) {
      fail(error_code::validation_error, fmt::format("{} is not a number: {}", field_name(index), shorten(text)));
      return;
    }
    if (auto error = check_value(v, text, index)) {
      problem_ = std::move(error);
      return;
    }
    input_.fahrenheit.push_back(v);
  }

  void fail(error_code code, std::string message) {
    if (!problem_) problem_ = api_error{code, std::move(message)};
  }

  std::size_t max_batch_;
  int depth_ = 0;
  bool root_is_object_ = false;
  bool in_field_ = false;  // the next value at depth 1 is the member 'fahrenheit'
  bool seen_field_ = false;
  bool in_batch_ = false;  // inside the 'fahrenheit' array
  std::size_t count_ = 0;  // values seen in 'fahrenheit' (also past max_batch)
  convert_input input_;
  std::optional<api_error> problem_;
};

}  // namespace

convert_parse_result parse_convert_body(std::string_view body, std::size_t max_batch) {
  // Iterative: nesting depth costs heap, not stack, so `[[[[...` cannot overflow the stack.
  constexpr unsigned flags = rapidjson::kParseIterativeFlag | rapidjson::kParseNumbersAsStringsFlag |
                             rapidjson::kParseNanAndInfFlag | rapidjson::kParseValidateEncodingFlag;
  convert_handler handler(max_batch);
  rapidjson::MemoryStream stream(body.data(), body.size());
  rapidjson::Reader reader;
  const rapidjson::ParseResult ok = reader.Parse<flags>(stream, handler);
  if (ok.Code() == rapidjson::kParseErrorNumberTooBig) {
    // Valid JSON whose number exceeds double range: a value problem, not a syntax error.
    if (handler.inside_field()) {
      return api_error{error_code::validation_error, fmt::format("{} must be a finite number within double range",
                                                                 field_name(handler.current_index()))};
    }
    return api_error{error_code::validation_error, fmt::format("number out of double range at offset {}", ok.Offset())};
  }
  if (ok.IsError()) {
    return api_error{error_code::invalid_json, fmt::format("malformed JSON at offset {}: {}", ok.Offset(),
                                                           rapidjson::GetParseError_En(ok.Code()))};
  }
  // RapidJSON's streams report a NUL byte as their end (Peek() == '\0'), so a document
  // followed by NUL and more bytes parses as complete. The body's length decides: any
  // byte left unread is trailing data, like `{"fahrenheit": 1} x`.
  if (stream.Tell() != body.size()) {
    return api_error{
        error_code::invalid_json,
        fmt::format("malformed JSON at offset {}: a NUL byte or other data after the document", stream.Tell())};
  }
  return std::move(handler).finish();
}

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded decoding; false on a broken %-escape.
bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = hex_value(in[i + 1]);
      const int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += c;
    }
  }
  return true;
}

}  // namespace

convert_parse_result parse_convert_query(std::string_view query) {
  std::optional<std::string> raw;
  std::string key;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const auto eq = pair.find('=');
    if (!percent_decode(pair.substr(0, eq), key)) {
      return api_error{error_code::validation_error, "malformed percent-encoding in query string"};
    }
    if (key != "fahrenheit") continue;
    if (raw) return api_error{error_code::validation_error, "duplicate query parameter 'fahrenheit'"};
    std::string value;
    if (eq != std::string_view::npos && !percent_decode(pair.substr(eq + 1), value)) {
      return api_error{error_code::validation_error, "malformed percent-encoding in 'fahrenheit'"};
    }
    raw = std::move(value);
  }
  if (!raw) return api_error{error_code::validation_error, "missing required query parameter 'fahrenheit'"};
  double v = 0;
  if (!parse_double(*raw, v)) {
    return api_error{error_code::validation_error,
                     fmt::format("'fahrenheit' must be a number, got '{}'", shorten(*raw))};
  }
  if (auto error = check_value(v, *raw, std::nullopt)) return std::move(*error);
  convert_input input;
  input.fahrenheit.push_back(v);
  return input;
}

}  // namespace celsius
