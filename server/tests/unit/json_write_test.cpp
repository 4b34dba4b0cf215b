#include "json_write.hpp"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <charconv>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace celsius {
namespace {

std::string number(double v) {
  std::string out;
  append_json_number(out, v);
  return out;
}

TEST(json_write, shortest_round_trip_numbers) {
  EXPECT_EQ(number(100.0), "100");
  EXPECT_EQ(number(-40.0), "-40");
  EXPECT_EQ(number(37.77777777777778), "37.77777777777778");
  EXPECT_EQ(number(0.1), "0.1");
  EXPECT_EQ(number(-0.0), "-0.0");
  EXPECT_EQ(number(0.0), "0");
  EXPECT_EQ(number(1e21), "1e+21");
  EXPECT_EQ(number(5e-324), "5e-324");
}

TEST(json_write, every_double_reads_back_exactly) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 50000; ++i) {
    const std::uint64_t bits = rng();
    double v;
    std::memcpy(&v, &bits, sizeof v);
    if (!std::isfinite(v)) continue;
    const std::string text = number(v);
    double back = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), back);
    ASSERT_EQ(ec, std::errc());
    ASSERT_EQ(ptr, text.data() + text.size());
    ASSERT_EQ(std::memcmp(&back, &v, sizeof v), 0) << text;
  }
}

TEST(json_write, strings_are_escaped) {
  std::string out;
  append_json_string(out, std::string_view("a\"b\\c\n\t\x01\x7f\xc3\xa9", 11));
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\n\\t\\u0001\\u007f\xc3\xa9\"");
  rapidjson::Document doc;
  doc.Parse(out.c_str());
  ASSERT_FALSE(doc.HasParseError());
  EXPECT_EQ(std::string(doc.GetString(), doc.GetStringLength()), std::string("a\"b\\c\n\t\x01\x7f\xc3\xa9"));
}

std::string as_json_string(std::string_view text) {
  std::string out;
  append_json_string(out, text);
  return out;
}

// Parses `json` as a JSON string, refusing invalid UTF-8.
bool valid_json_string(const std::string& json, std::string* value = nullptr) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(json.c_str(), json.size());
  if (doc.HasParseError() || !doc.IsString()) return false;
  if (value != nullptr) *value = std::string(doc.GetString(), doc.GetStringLength());
  return true;
}

constexpr std::string_view fffd = "\xef\xbf\xbd";

std::string replaced(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += fffd;
  return out;
}

TEST(json_write, ill_formed_utf8_becomes_one_replacement_per_maximal_subpart) {
  // Unicode 15, section 3.9, table 3-8 (and Python's bytes.decode("utf-8", "replace")).
  const std::pair<std::string_view, std::string> cases[] = {
      {"a\xf1\x80\x80\xe1\x80\xc2"
       "b\x80"
       "c\x80\xbf"
       "d",
       "a" + replaced(3) + "b" + replaced(1) + "c" + replaced(2) + "d"},
      {"\xff", replaced(1)},              // GET /convert?fahrenheit=%FF (issue 10, item 6)
      {"\xc0\xaf", replaced(2)},          // %C0%AF: overlong '/' (issue 10, item 6)
      {"\xe0\x80\xaf", replaced(3)},      // overlong, three bytes
      {"\xed\xa0\x80", replaced(3)},      // a UTF-16 surrogate, U+D800
      {"\xf4\x90\x80\x80", replaced(4)},  // above U+10FFFF
      {"\xf5\x80", replaced(2)},          // F5 starts nothing
      {"\xe2\x82", replaced(1)},          // truncated at the end
      {"\xe2\x82"
       "A",
       replaced(1) + "A"},  // truncated before ASCII (kept)
      {"\xf0\x9f\x98"
       "x",
       replaced(1) + "x"},                                                               // truncated four-byte sequence
      {"\x80", replaced(1)},                                                             // a stray continuation byte
      {"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"},  // e-acute, euro, emoji
  };
  for (const auto& [input, expected] : cases) {
    const std::string json = as_json_string(input);
    EXPECT_EQ(json, "\"" + expected + "\"") << testing::PrintToString(std::string(input));
    std::string back;
    EXPECT_TRUE(valid_json_string(json, &back)) << json;
    EXPECT_EQ(back, expected);
  }
}

TEST(json_write, every_code_point_passes_through_unchanged) {
  for (std::uint32_t cp = 0x80; cp <= 0x10ffff; ++cp) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    std::string utf8;
    if (cp < 0x800) {
      utf8 = {static_cast<char>(0xc0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3f))};
    } else if (cp < 0x10000) {
      utf8 = {static_cast<char>(0xe0 | (cp >> 12)), static_cast<char>(0x80 | ((cp >> 6) & 0x3f)),
              static_cast<char>(0x80 | (cp & 0x3f))};
    } else {
      utf8 = {static_cast<char>(0xf0 | (cp >> 18)), static_cast<char>(0x80 | ((cp >> 12) & 0x3f)),
              static_cast<char>(0x80 | ((cp >> 6) & 0x3f)), static_cast<char>(0x80 | (cp & 0x3f))};
    }
    const utf8_sequence seq = next_utf8_sequence(utf8);
    ASSERT_TRUE(seq.valid) << cp;
    ASSERT_EQ(seq.length, utf8.size()) << cp;
    ASSERT_EQ(as_json_string(utf8), "\"" + utf8 + "\"") << cp;
  }
}

TEST(json_write, random_bytes_always_give_valid_utf8_json) {
  std::mt19937_64 rng(11);
  for (int i = 0; i < 20000; ++i) {
    std::string bytes(rng() % 24, '\0');
    for (auto& b : bytes) b = static_cast<char>(rng() % 4 == 0 ? 0x80 | (rng() & 0x7f) : rng());
    const std::string json = as_json_string(bytes);
    std::string back;
    ASSERT_TRUE(valid_json_string(json, &back)) << testing::PrintToString(bytes);
    // Every byte of a well-formed input survives; only replacements are added.
    if (back.find(fffd) == std::string::npos) ASSERT_EQ(back, bytes);
  }
}

TEST(json_write, convert_bodies) {
  EXPECT_EQ(convert_body(212, 100, "id"), R"({"fahrenheit":212,"celsius":100,"app_id":"id"})");
  const std::vector<double> f = {32, -40}, c = {0, -40};
  EXPECT_EQ(convert_batch_body(f, c, "id"), R"({"fahrenheit":[32,-40],"celsius":[0,-40],"app_id":"id"})");
}

}  // namespace
}  // namespace celsius
