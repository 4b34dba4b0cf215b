#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace celsius {

// A client's X-Request-Id is echoed only when it is 1..128 characters of
// [A-Za-z0-9] and "-_.:+/=@" (what tracing systems use), so it is safe in headers
// and logs; anything else is replaced by a generated id.
bool is_safe_request_id(std::string_view id) noexcept;

// Random UUIDv4-formatted ids from a per-thread xoshiro256** generator: unique enough to
// correlate logs, far cheaper than a cryptographic source. Not for secrets.
class request_id_generator {
 public:
  request_id_generator();  // seeded from std::random_device
  explicit request_id_generator(std::uint64_t seed);
  std::string next();

 private:
  std::uint64_t next_u64() noexcept;
  std::uint64_t s_[4];
};

// The service instance id: a UUIDv4 from Boost.Uuid's random generator.
std::string make_app_id();

// True when `id` is a lowercase canonical UUID whose version nibble is 4 and variant is RFC 4122.
bool is_uuid_v4(std::string_view id) noexcept;

}  // namespace celsius
