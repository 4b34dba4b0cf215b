#pragma once

#include <span>
#include <string>
#include <string_view>

namespace celsius {

// Appends the shortest decimal text that reads back as exactly `value`
// (std::to_chars); negative zero is "-0.0" so that parsers reading "-0" as an integer keep
// its sign. `value` must be finite: JSON has no NaN or infinities.
void append_json_number(std::string& out, double value);

// Appends `text` as a quoted JSON string, escaping quotes, backslashes and control
// characters. Bytes >= 0x80 pass through unchanged.
void append_json_string(std::string& out, std::string_view text);

// {"fahrenheit":F,"celsius":C,"app_id":"..."}
std::string convert_body(double fahrenheit, double celsius, std::string_view app_id);

// {"fahrenheit":[...],"celsius":[...],"app_id":"..."}
std::string convert_batch_body(std::span<const double> fahrenheit, std::span<const double> celsius,
                               std::string_view app_id);

}  // namespace celsius
