#include "json_body.hpp"

#include <gtest/gtest.h>

#include <charconv>
#include <cmath>
#include <random>

#include "convert.hpp"

namespace celsius {
namespace {

convert_input ok(std::string_view body, std::size_t max_batch = 100) {
  auto result = parse_convert_body(body, max_batch);
  if (auto* e = std::get_if<api_error>(&result)) {
    ADD_FAILURE() << body << " -> " << code_name(e->code) << ": " << e->message;
    return {};
  }
  return std::get<convert_input>(std::move(result));
}

api_error err(std::string_view body, std::size_t max_batch = 100) {
  auto result = parse_convert_body(body, max_batch);
  if (auto* e = std::get_if<api_error>(&result)) return *e;
  ADD_FAILURE() << body << " unexpectedly parsed";
  return {error_code::internal_error, ""};
}

api_error qerr(std::string_view query) {
  auto result = parse_convert_query(query);
  if (auto* e = std::get_if<api_error>(&result)) return *e;
  ADD_FAILURE() << query << " unexpectedly parsed";
  return {error_code::internal_error, ""};
}

bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

TEST(json_body, single_value) {
  const auto in = ok(R"({"fahrenheit": 98.6})");
  EXPECT_FALSE(in.batch);
  ASSERT_EQ(in.fahrenheit.size(), 1u);
  EXPECT_EQ(in.fahrenheit[0], 98.6);
}

TEST(json_body, batch_in_order) {
  const auto in = ok(R"({"fahrenheit": [3, 1.5, -2e2, 0]})");
  EXPECT_TRUE(in.batch);
  ASSERT_EQ(in.fahrenheit.size(), 4u);
  EXPECT_EQ(in.fahrenheit[0], 3);
  EXPECT_EQ(in.fahrenheit[1], 1.5);
  EXPECT_EQ(in.fahrenheit[2], -200);
  EXPECT_EQ(in.fahrenheit[3], 0);
}

TEST(json_body, integers_big_integers_and_exponents) {
  EXPECT_EQ(ok(R"({"fahrenheit": 32})").fahrenheit[0], 32.0);
  EXPECT_EQ(ok(R"({"fahrenheit": 123456789012345678901234567890})").fahrenheit[0], 1.2345678901234568e29);
  EXPECT_EQ(ok(R"({"fahrenheit": 1E2})").fahrenheit[0], 100.0);
}

TEST(json_body, negative_zero_and_underflow) {
  const double nz = ok(R"({"fahrenheit": -0})").fahrenheit[0];
  EXPECT_EQ(nz, 0.0);
  EXPECT_TRUE(std::signbit(nz));
  EXPECT_EQ(ok(R"({"fahrenheit": 1e-400})").fahrenheit[0], 0.0);
  EXPECT_EQ(ok(R"({"fahrenheit": 4.9406564584124654e-324})").fahrenheit[0], std::numeric_limits<double>::denorm_min());
}

TEST(json_body, unknown_members_are_ignored_and_escaped_keys_match) {
  const auto in = ok(R"({"unit": "F", "nested": {"fahrenheit": "x"}, "fahr\u0065nheit": 5, "more": [[1], {}]})");
  ASSERT_EQ(in.fahrenheit.size(), 1u);
  EXPECT_EQ(in.fahrenheit[0], 5.0);
}

TEST(json_body, numbers_are_correctly_rounded) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < 20000; ++i) {
    std::uint64_t bits = rng();
    double v;
    std::memcpy(&v, &bits, sizeof v);
    if (!std::isfinite(v) || v < absolute_zero_fahrenheit || !std::isfinite(to_celsius(v))) continue;
    char text[64];
    const auto end = std::to_chars(text, text + sizeof text, v, std::chars_format::scientific, 25).ptr;
    const std::string body = R"({"fahrenheit": )" + std::string(text, end) + "}";
    const auto in = ok(body);
    ASSERT_EQ(in.fahrenheit.size(), 1u);
    ASSERT_EQ(in.fahrenheit[0], v) << body;
  }
}

TEST(json_body, malformed_json) {
  for (const char* body : {"", " ", "{", "}", R"({"fahrenheit": })", R"({"fahrenheit": 1,})", R"({fahrenheit: 1})",
                           R"({"fahrenheit": 1} {})", R"({"fahrenheit": 01})", R"({"fahrenheit": .5})",
                           R"({"fahrenheit": +1})", R"({"fahrenheit": 1.})", R"({"fahrenheit": 0x10})",
                           "{\"fahrenheit\": \"\xff\"}", R"({"fahrenheit": 1 /* c */})", R"({"fahrenheit": nan})"}) {
    const auto e = err(body);
    EXPECT_EQ(e.code, error_code::invalid_json) << body << " -> " << e.message;
  }
}

TEST(json_body, a_nul_byte_does_not_end_the_document) {
  // Issue 10, item 7: {"fahrenheit": 32} NUL {"fahrenheit": 999} was answered 200 with
  // celsius 0. The body's length decides where the document ends, not a terminator.
  using namespace std::string_view_literals;
  for (const std::string_view body :
       {R"({"fahrenheit": 32})"
        "\0"
        R"({"fahrenheit": 999})"sv,
        "{\"fahrenheit\": 32}\0"sv, "{\"fahrenheit\": 32} \0 "sv, "\0{\"fahrenheit\": 32}"sv,
        "{\"fahrenheit\": 3\0002}"sv, "{\"fahrenheit\": [1,\0 2]}"sv, "{\"fahren\0heit\": 32}"sv,
        "{\"fahrenheit\": 32, \"x\": \"a\0b\"}"sv, "\0"sv}) {
    const auto e = err(body);
    EXPECT_EQ(e.code, error_code::invalid_json) << testing::PrintToString(std::string(body)) << " -> " << e.message;
  }
  // An escaped NUL inside a string is valid JSON.
  EXPECT_EQ(ok(R"({"fahrenheit": 32, "note": "a\u0000b"})").fahrenheit[0], 32.0);
  EXPECT_TRUE(contains(err("{\"fahrenheit\": 32}\0{}"sv).message, "offset 18"));
}

TEST(query, a_nul_byte_is_not_a_terminator) {
  EXPECT_EQ(qerr("fahrenheit=32%00").code, error_code::validation_error);
  EXPECT_EQ(qerr("fahrenheit=32%00999").code, error_code::validation_error);
  EXPECT_EQ(qerr("fahrenheit=1e3%00").code, error_code::validation_error);
}

TEST(json_body, malformed_json_wins_over_wrong_types) {
  EXPECT_EQ(err(R"({"fahrenheit": "x",)").code, error_code::invalid_json);
  EXPECT_EQ(err(R"([1, 2)").code, error_code::invalid_json);
}

TEST(json_body, wrong_shapes_name_the_problem) {
  struct c {
    const char* body;
    const char* fragment;
  };
  for (const auto& [body, fragment] :
       {c{"[]", "object, got array"}, c{"3", "object, got number"}, c{R"("x")", "object, got string"},
        c{"null", "object, got null"}, c{"{}", "missing required member 'fahrenheit'"},
        c{R"({"fahrenheit": "1"})", "got string"}, c{R"({"fahrenheit": false})", "got boolean"},
        c{R"({"fahrenheit": null})", "got null"}, c{R"({"fahrenheit": {}})", "got object"},
        c{R"({"fahrenheit": []})", "must not be an empty array"},
        c{R"({"fahrenheit": [1, 2, [3]]})", "'fahrenheit[2]' must be a number, got array"},
        c{R"({"fahrenheit": [1, null]})", "'fahrenheit[1]' must be a number, got null"},
        c{R"({"fahrenheit": [1, {}]})", "'fahrenheit[1]' must be a number, got object"},
        c{R"({"fahrenheit": 1, "fahrenheit": 1})", "duplicate member 'fahrenheit'"}}) {
    const auto e = err(body);
    EXPECT_EQ(e.code, error_code::validation_error) << body;
    EXPECT_TRUE(contains(e.message, fragment)) << body << " -> " << e.message;
  }
}

TEST(json_body, non_finite_and_out_of_range) {
  for (const char* body : {R"({"fahrenheit": NaN})", R"({"fahrenheit": Infinity})", R"({"fahrenheit": -Infinity})",
                           R"({"fahrenheit": 1e400})", R"({"fahrenheit": -1e400})", R"({"fahrenheit": 1.8e308})"}) {
    const auto e = err(body);
    EXPECT_EQ(e.code, error_code::validation_error) << body;
    EXPECT_TRUE(contains(e.message, "'fahrenheit'")) << e.message;
  }
  EXPECT_TRUE(contains(err(R"({"fahrenheit": [1, 2, 1e400]})").message, "'fahrenheit[2]'"));
  EXPECT_TRUE(contains(err(R"({"fahrenheit": [1, NaN]})").message, "'fahrenheit[1]'"));
  EXPECT_TRUE(contains(err(R"({"fahrenheit": [1e308]})").message, "overflows"));
}

TEST(json_body, below_absolute_zero_names_the_first_offender) {
  EXPECT_EQ(ok(R"({"fahrenheit": -459.67})").fahrenheit[0], -459.67);
  const auto single = err(R"({"fahrenheit": -459.68})");
  EXPECT_EQ(single.code, error_code::below_absolute_zero);
  EXPECT_TRUE(contains(single.message, "'fahrenheit'"));
  const auto batch = err(R"({"fahrenheit": [0, -459.67, -500, -600]})");
  EXPECT_EQ(batch.code, error_code::below_absolute_zero);
  EXPECT_TRUE(contains(batch.message, "'fahrenheit[2]'")) << batch.message;
}

TEST(json_body, first_problem_in_document_order_wins) {
  EXPECT_TRUE(contains(err(R"({"fahrenheit": [1, "x", -500]})").message, "'fahrenheit[1]'"));
  const auto e = err(R"({"fahrenheit": [1, -500, "x"]})");
  EXPECT_EQ(e.code, error_code::below_absolute_zero);
  EXPECT_TRUE(contains(e.message, "'fahrenheit[1]'"));
}

TEST(json_body, batch_limit) {
  EXPECT_EQ(ok(R"({"fahrenheit": [1, 2, 3]})", 3).fahrenheit.size(), 3u);
  const auto e = err(R"({"fahrenheit": [1, 2, 3, 4]})", 3);
  EXPECT_EQ(e.code, error_code::batch_too_large);
  EXPECT_TRUE(contains(e.message, "4")) << e.message;
  // The limit is a request-level check: it wins over a bad value, not over bad JSON.
  EXPECT_EQ(err(R"({"fahrenheit": [-500, 2, 3, 4]})", 3).code, error_code::batch_too_large);
  EXPECT_EQ(err(R"({"fahrenheit": [1, 2, 3, 4)", 3).code, error_code::invalid_json);
}

TEST(json_body, deep_nesting_is_a_clean_error) {
  std::string deep = R"({"x": )" + std::string(100000, '[') + std::string(100000, ']') + "}";
  auto result = parse_convert_body(deep, 10);  // must not overflow the stack
  EXPECT_TRUE(std::holds_alternative<api_error>(result));
}

TEST(query, parses_the_value) {
  auto result = parse_convert_query("fahrenheit=98.6");
  ASSERT_TRUE(std::holds_alternative<convert_input>(result));
  EXPECT_EQ(std::get<convert_input>(result).fahrenheit[0], 98.6);
  EXPECT_FALSE(std::get<convert_input>(result).batch);
  result = parse_convert_query("a=1&fahrenheit=%2D40&b");
  ASSERT_TRUE(std::holds_alternative<convert_input>(result));
  EXPECT_EQ(std::get<convert_input>(result).fahrenheit[0], -40.0);
}

TEST(query, errors) {
  EXPECT_TRUE(contains(qerr("").message, "missing"));
  EXPECT_TRUE(contains(qerr("celsius=1").message, "missing"));
  EXPECT_TRUE(contains(qerr("fahrenheit=1&fahrenheit=2").message, "duplicate"));
  EXPECT_TRUE(contains(qerr("fahrenheit=").message, "must be a number"));
  EXPECT_TRUE(contains(qerr("fahrenheit=abc").message, "must be a number"));
  EXPECT_TRUE(contains(qerr("fahrenheit=1+2").message, "must be a number"));
  EXPECT_TRUE(contains(qerr("fahrenheit=%zz").message, "percent"));
  EXPECT_TRUE(contains(qerr("fahrenheit=%2").message, "percent"));
  EXPECT_EQ(qerr("fahrenheit=inf").code, error_code::validation_error);
  EXPECT_EQ(qerr("fahrenheit=1e400").code, error_code::validation_error);
  EXPECT_EQ(qerr("fahrenheit=-460").code, error_code::below_absolute_zero);
}

TEST(parse_double, grammar) {
  double v = 0;
  EXPECT_TRUE(parse_double("1e-400", v));
  EXPECT_EQ(v, 0.0);
  EXPECT_TRUE(parse_double("1e400", v));
  EXPECT_TRUE(std::isinf(v));
  EXPECT_FALSE(parse_double("", v));
  EXPECT_FALSE(parse_double("1x", v));
  EXPECT_FALSE(parse_double(" 1", v));
}

}  // namespace
}  // namespace celsius
