// REST paths read with TF Serving's patterns (http_rest_api_util.cc).
#include "rest_paths.hpp"

#include <gtest/gtest.h>

namespace celsius::serving {
namespace {

TEST(rest_paths, predict_paths) {
  auto r = parse_rest_path("POST", "/v1/models/f2c:predict");
  ASSERT_TRUE(r.path.matched);
  EXPECT_EQ(r.path.model_name, "f2c");
  EXPECT_EQ(r.path.method, "predict");
  EXPECT_FALSE(r.path.version);
  r = parse_rest_path("POST", "/v1/models/f2c/versions/007:predict");
  ASSERT_TRUE(r.path.matched);
  EXPECT_EQ(*r.path.version, 7);
  r = parse_rest_path("POST", "/v1/models/f2c/labels/stable:regress");
  ASSERT_TRUE(r.path.matched);
  EXPECT_EQ(*r.path.label, "stable");
  EXPECT_EQ(r.path.method, "regress");
  // Case-insensitive patterns; the captured method keeps the request's spelling.
  r = parse_rest_path("POST", "/V1/MODELS/f2c:PREDICT");
  ASSERT_TRUE(r.path.matched);
  EXPECT_EQ(r.path.method, "PREDICT");
  // Percent-decoded names.
  r = parse_rest_path("POST", "/v1/models/f%32c:predict");
  EXPECT_EQ(r.path.model_name, "f2c");
}

TEST(rest_paths, non_matching_paths) {
  for (const char* p : {"/v1/models/f2c", "/v1/models/:predict", "/v1/models/f2c/versions/x:predict",
                        "/v1/models/f2c:predict/", "/v1/models/a/b:predict", "/v2/models/f2c:predict"}) {
    EXPECT_FALSE(parse_rest_path("POST", p).path.matched) << p;
  }
  EXPECT_FALSE(parse_rest_path("PUT", "/v1/models/f2c").path.matched);
  EXPECT_FALSE(parse_rest_path("GET", "/v1/models/f2c:predict").path.matched);
}

TEST(rest_paths, status_and_metadata_paths) {
  auto r = parse_rest_path("GET", "/v1/models/f2c");
  ASSERT_TRUE(r.path.matched);
  EXPECT_EQ(r.path.model_name, "f2c");
  EXPECT_EQ(r.path.subresource, "");
  r = parse_rest_path("GET", "/v1/models/f2c/versions/2/metadata");
  ASSERT_TRUE(r.path.matched);
  EXPECT_EQ(*r.path.version, 2);
  EXPECT_EQ(r.path.subresource, "metadata");
  r = parse_rest_path("GET", "/v1/models");
  ASSERT_TRUE(r.path.matched);
  EXPECT_EQ(r.path.model_name, "");
  // A model may be called "metadata".
  r = parse_rest_path("GET", "/v1/models/metadata");
  ASSERT_TRUE(r.path.matched);
  EXPECT_EQ(r.path.model_name, "metadata");
  EXPECT_FALSE(parse_rest_path("GET", "/v1/models/f2c/extra").path.matched);
}

TEST(rest_paths, versions_must_fit_int64) {
  const auto r = parse_rest_path("GET", "/v1/models/f2c/versions/99999999999999999999");
  EXPECT_EQ(r.error, "Failed to convert version: 99999999999999999999 to numeric.");
}

TEST(rest_paths, percent_decoding) {
  EXPECT_EQ(percent_decode("a%20b"), "a b");
  EXPECT_EQ(percent_decode("100%"), "100%");
  EXPECT_EQ(percent_decode("%zz%4"), "%zz%4");
}

}  // namespace
}  // namespace celsius::serving
