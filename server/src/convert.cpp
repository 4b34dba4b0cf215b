#include "convert.hpp"

#include <cassert>
#include <cmath>

namespace celsius {

std::optional<value_problem> check_fahrenheit(double fahrenheit) noexcept {
  if (!std::isfinite(fahrenheit)) return value_problem::not_finite;
  if (fahrenheit < absolute_zero_fahrenheit) return value_problem::below_absolute_zero;
  if (!std::isfinite(to_celsius(fahrenheit))) return value_problem::result_overflow;
  return std::nullopt;
}

void to_celsius(std::span<const double> in, std::span<double> out) noexcept {
  assert(in.size() == out.size());
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = to_celsius(in[i]);
}

}  // namespace celsius
