// The REST client's reading and writing of TF Serving's JSON, as plain functions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "rest_model_client.hpp"

namespace celsius {
namespace {

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

std::vector<double> values_of(const predict_result& result) {
  if (const auto* e = std::get_if<model_error>(&result)) ADD_FAILURE() << e->message;
  return std::get_if<model_prediction>(&result) ? std::get<model_prediction>(result).celsius : std::vector<double>{};
}

TEST(rest_predictions, reads_tf_serving_pretty_printed_answers_exactly) {
  // TF Serving: pretty-printed, 6 significant digits when they round-trip, else 17.
  const std::string body = "{\n    \"predictions\": [0.0, 100.0, -273.15, 37.777777777777779, 5e-324, -0.0\n    ]\n}";
  const auto values = values_of(parse_rest_predictions(body, 6));
  ASSERT_EQ(values.size(), 6u);
  EXPECT_TRUE(same_bits(values[0], 0.0));
  EXPECT_TRUE(same_bits(values[1], 100.0));
  EXPECT_TRUE(same_bits(values[2], -273.15));
  EXPECT_TRUE(same_bits(values[3], (100.0 - 32.0) * 5.0 / 9.0));
  EXPECT_TRUE(same_bits(values[4], 5e-324));
  EXPECT_TRUE(same_bits(values[5], -0.0));
}

TEST(rest_predictions, reads_bare_nan_and_infinity_tokens) {
  const auto values = values_of(parse_rest_predictions(R"({"predictions": [NaN, Infinity, -Infinity]})", 3));
  ASSERT_EQ(values.size(), 3u);
  EXPECT_TRUE(std::isnan(values[0]));
  EXPECT_EQ(values[1], INFINITY);
  EXPECT_EQ(values[2], -INFINITY);
}

TEST(rest_predictions, malformed_answers_are_reported_not_trusted) {
  for (const auto& [body, expected] :
       std::vector<std::pair<std::string, std::size_t>>{{"", 1},
                                                        {"not json", 1},
                                                        {R"({"outputs": [1.0]})", 1},
                                                        {R"({"predictions": 1.0})", 1},
                                                        {R"({"predictions": {"celsius": [1.0]}})", 1},
                                                        {R"({"predictions": ["1.0"]})", 1},
                                                        {R"({"predictions": [[1.0]]})", 1},
                                                        {R"({"predictions": [1.0, null]})", 2},
                                                        {R"({"predictions": [1.0, 2.0]})", 1},
                                                        {R"({"predictions": [1.0]})", 2},
                                                        {R"({"predictions": [1.0])", 1},
                                                        {R"({"predictions": [1.0], "predictions": [2.0]})", 2},
                                                        {R"({"predictions": [1.0], "predictions": [2.0]})", 1},
                                                        {R"({"predictions": [[1.0], [2.0]]})", 2},
                                                        {R"([1.0, 2.0])", 2}}) {
    const auto result = parse_rest_predictions(body, expected);
    ASSERT_TRUE(std::holds_alternative<model_error>(result)) << body;
    EXPECT_EQ(std::get<model_error>(result).kind, model_failure::malformed) << body;
    EXPECT_FALSE(std::get<model_error>(result).message.empty());
  }
}

TEST(rest_predictions, request_body_round_trips_every_double) {
  const std::vector<double> in = {98.6, -459.67, -0.0, 5e-324, 1.7976931348623157e308};
  EXPECT_EQ(rest_predict_body(in),
            R"({"signature_name":"serving_default","instances":[98.6,-459.67,-0.0,5e-324,1.7976931348623157e+308]})");
  const double whole[] = {32, 1475042061262187776.0};
  EXPECT_EQ(rest_predict_body(whole),
            R"({"signature_name":"serving_default","instances":[32.0,1475042061262187776.0]})");
}

TEST(rest_status, finds_the_newest_available_version) {
  const auto status = parse_rest_status(R"({
 "model_version_status": [
  {"version": "2", "state": "LOADING", "status": {"error_code": "OK", "error_message": ""}},
  {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
  {"version": "3", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
 ]
})");
  EXPECT_TRUE(status.available);
  EXPECT_EQ(status.version, 3);
  EXPECT_TRUE(status.detail.empty());
}

TEST(rest_status, not_available_says_why) {
  const auto loading = parse_rest_status(R"({"model_version_status": [{"version": "1", "state": "LOADING"}]})");
  EXPECT_FALSE(loading.available);
  EXPECT_NE(loading.detail.find("AVAILABLE"), std::string::npos);
  const auto garbage = parse_rest_status("<html>");
  EXPECT_FALSE(garbage.available);
  EXPECT_NE(garbage.detail.find("<html>"), std::string::npos);
}

TEST(rest_errors, message_from_the_error_member_or_the_body) {
  EXPECT_EQ(parse_rest_error(R"j({ "error": "Servable not found for request: Latest(nope)" })j"),
            "Servable not found for request: Latest(nope)");
  EXPECT_EQ(parse_rest_error("Bad Gateway"), "Bad Gateway");
  EXPECT_EQ(parse_rest_error(std::string(300, 'x')).size(), 203u);  // shortened
}

}  // namespace
}  // namespace celsius
