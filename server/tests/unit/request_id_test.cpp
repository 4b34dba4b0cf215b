#include "request_id.hpp"

#include <gtest/gtest.h>

#include <set>

namespace celsius {
namespace {

TEST(request_id, safe_tokens) {
  EXPECT_TRUE(is_safe_request_id("abc-123_DEF.ghi:jkl+/=@"));
  EXPECT_TRUE(is_safe_request_id(std::string(128, 'a')));
  EXPECT_FALSE(is_safe_request_id(std::string(129, 'a')));
  EXPECT_FALSE(is_safe_request_id(""));
  for (const char* bad : {"a b", "a\tb", "a\"b", "a;b", "a,b", "a\\b", "\xc3\xa9", "a\r\nX-Evil: 1"}) {
    EXPECT_FALSE(is_safe_request_id(bad)) << bad;
  }
}

TEST(request_id, generated_ids_are_uuid4_shaped_and_unique) {
  request_id_generator gen(1);
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    const std::string id = gen.next();
    ASSERT_TRUE(is_uuid_v4(id)) << id;
    ASSERT_TRUE(is_safe_request_id(id));
    ASSERT_TRUE(seen.insert(id).second) << id;
  }
  request_id_generator a, b;  // randomly seeded generators differ
  EXPECT_NE(a.next(), b.next());
}

TEST(request_id, app_id_is_a_random_uuid4) {
  const std::string a = make_app_id(), b = make_app_id();
  EXPECT_TRUE(is_uuid_v4(a)) << a;
  EXPECT_TRUE(is_uuid_v4(b)) << b;
  EXPECT_NE(a, b);
  EXPECT_FALSE(is_uuid_v4("123e4567-e89b-12d3-a456-426614174000")) << "version 1";
  EXPECT_FALSE(is_uuid_v4("123e4567-e89b-42d3-c456-426614174000")) << "wrong variant";
  EXPECT_FALSE(is_uuid_v4("123E4567-E89B-42D3-A456-426614174000")) << "uppercase";
}

}  // namespace
}  // namespace celsius
