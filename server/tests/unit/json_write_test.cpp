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

TEST(json_write, convert_bodies) {
  EXPECT_EQ(convert_body(212, 100, "id"), R"({"fahrenheit":212,"celsius":100,"app_id":"id"})");
  const std::vector<double> f = {32, -40}, c = {0, -40};
  EXPECT_EQ(convert_batch_body(f, c, "id"), R"({"fahrenheit":[32,-40],"celsius":[0,-40],"app_id":"id"})");
}

}  // namespace
}  // namespace celsius
