#include "errors.hpp"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <set>

namespace celsius {
namespace {

const error_code all_codes[] = {error_code::bad_request,
                                error_code::invalid_json,
                                error_code::not_found,
                                error_code::method_not_allowed,
                                error_code::request_timeout,
                                error_code::batch_too_large,
                                error_code::payload_too_large,
                                error_code::unsupported_media_type,
                                error_code::validation_error,
                                error_code::below_absolute_zero,
                                error_code::header_too_large,
                                error_code::internal_error,
                                error_code::not_implemented,
                                error_code::model_error,
                                error_code::model_not_configured,
                                error_code::model_unavailable,
                                error_code::model_timeout};

TEST(errors, status_mapping) {
  EXPECT_EQ(http_status(error_code::invalid_json), 400u);
  EXPECT_EQ(http_status(error_code::bad_request), 400u);
  EXPECT_EQ(http_status(error_code::not_found), 404u);
  EXPECT_EQ(http_status(error_code::method_not_allowed), 405u);
  EXPECT_EQ(http_status(error_code::request_timeout), 408u);
  EXPECT_EQ(http_status(error_code::batch_too_large), 413u);
  EXPECT_EQ(http_status(error_code::payload_too_large), 413u);
  EXPECT_EQ(http_status(error_code::unsupported_media_type), 415u);
  EXPECT_EQ(http_status(error_code::validation_error), 422u);
  EXPECT_EQ(http_status(error_code::below_absolute_zero), 422u);
  EXPECT_EQ(http_status(error_code::header_too_large), 431u);
  EXPECT_EQ(http_status(error_code::internal_error), 500u);
  EXPECT_EQ(http_status(error_code::not_implemented), 501u);
  EXPECT_EQ(code_name(error_code::not_implemented), "not_implemented");
}

TEST(errors, names_are_unique_snake_case) {
  std::set<std::string_view> seen;
  for (const auto code : all_codes) {
    const auto name = code_name(code);
    EXPECT_TRUE(seen.insert(name).second) << name;
    for (const char c : name) EXPECT_TRUE((c >= 'a' && c <= 'z') || c == '_') << name;
  }
}

TEST(errors, body_is_the_documented_envelope) {
  const std::string body = error_body({error_code::validation_error, "'fahrenheit' is \"bad\""});
  EXPECT_EQ(body, R"({"error":{"code":"validation_error","message":"'fahrenheit' is \"bad\""}})");
  rapidjson::Document doc;
  doc.Parse(body.c_str());
  ASSERT_FALSE(doc.HasParseError());
  EXPECT_STREQ(doc["error"]["message"].GetString(), "'fahrenheit' is \"bad\"");
}

}  // namespace
}  // namespace celsius
