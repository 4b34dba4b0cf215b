#include "request_id.hpp"

#include <boost/uuid/uuid.hpp>
#include <boost/uuid/uuid_generators.hpp>
#include <boost/uuid/uuid_io.hpp>
#include <random>

namespace celsius {

bool is_safe_request_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 128) return false;
  for (const char c : id) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && std::string_view("-_.:+/=@").find(c) == std::string_view::npos) return false;
  }
  return true;
}

namespace {
std::uint64_t splitmix64(std::uint64_t& x) noexcept {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
}  // namespace

request_id_generator::request_id_generator(std::uint64_t seed) {
  for (auto& word : s_) word = splitmix64(seed);
}

request_id_generator::request_id_generator()
    : request_id_generator((std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}()) {}

std::uint64_t request_id_generator::next_u64() noexcept {
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

std::string request_id_generator::next() {
  static constexpr char hex[] = "0123456789abcdef";
  std::uint64_t hi = next_u64();
  std::uint64_t lo = next_u64();
  hi = (hi & ~0xf000ULL) | 0x4000ULL;            // version 4
  lo = (lo & ~(0xcULL << 60)) | (0x8ULL << 60);  // RFC 4122 variant
  std::string out(36, '-');
  std::size_t pos = 0;
  auto put = [&](std::uint64_t word, int nibbles_from, int nibbles_to) {
    for (int i = nibbles_from; i < nibbles_to; ++i) {
      if (pos == 8 || pos == 13 || pos == 18 || pos == 23) ++pos;
      out[pos++] = hex[(word >> (60 - 4 * i)) & 0xf];
    }
  };
  put(hi, 0, 16);
  put(lo, 0, 16);
  return out;
}

std::string make_app_id() {
  boost::uuids::random_generator generator;
  return boost::uuids::to_string(generator());
}

bool is_uuid_v4(std::string_view id) noexcept {
  if (id.size() != 36) return false;
  for (std::size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  const char variant = id[19];
  return id[14] == '4' && (variant == '8' || variant == '9' || variant == 'a' || variant == 'b');
}

}  // namespace celsius
