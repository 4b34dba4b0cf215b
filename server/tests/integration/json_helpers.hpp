#pragma once

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <string>

namespace celsius::test {

inline rapidjson::Document parse_json(const std::string& body) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseFullPrecisionFlag>(body.c_str());
  EXPECT_FALSE(doc.HasParseError()) << "not JSON: " << body;
  return doc;
}

// Asserts the error envelope {"error":{"code":CODE,"message":non-empty}} and returns the message.
inline std::string expect_error(const std::string& body, const std::string& code) {
  const auto doc = parse_json(body);
  if (!doc.IsObject() || !doc.HasMember("error") || !doc["error"].IsObject()) {
    ADD_FAILURE() << "not an error envelope: " << body;
    return {};
  }
  const auto& error = doc["error"];
  EXPECT_TRUE(error.HasMember("code") && error["code"].IsString()) << body;
  EXPECT_TRUE(error.HasMember("message") && error["message"].IsString()) << body;
  EXPECT_EQ(error.MemberCount(), 2u) << body;
  if (!error.HasMember("code") || !error.HasMember("message")) return {};
  EXPECT_EQ(std::string(error["code"].GetString()), code) << body;
  const std::string message = error["message"].GetString();
  EXPECT_FALSE(message.empty());
  return message;
}

}  // namespace celsius::test
