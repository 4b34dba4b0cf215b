#pragma once

#include <boost/container/small_vector.hpp>
#include <cstddef>
#include <string_view>
#include <variant>

#include "errors.hpp"

namespace celsius {

// A validated conversion request: every value is finite, at or above absolute zero,
// and converts without overflow.
struct convert_input {
  boost::container::small_vector<double, 4> fahrenheit;
  bool batch = false;  // the request used the array form
};

using convert_parse_result = std::variant<convert_input, api_error>;

// Parses a POST body `{"fahrenheit": <number>}` or `{"fahrenheit": [<number>, ...]}`.
// Unknown members are ignored. Precedence of errors: malformed JSON (400 invalid_json),
// then too many values (413 batch_too_large), then the first problem in document order
// (422 validation_error / below_absolute_zero), naming the field or index.
convert_parse_result parse_convert_body(std::string_view body, std::size_t max_batch);

// Parses the query string of GET /convert (`fahrenheit=<number>`, percent-encoded;
// other parameters are ignored) with the same value rules as the body.
convert_parse_result parse_convert_query(std::string_view query);

// Reads a decimal number the way JSON writes it (also `NaN`/`Infinity`, rejected later).
// Values too small for a double become 0 like in every JSON parser; values too large
// become an infinity. Returns false when `text` is not a number.
bool parse_double(std::string_view text, double& out) noexcept;

}  // namespace celsius
