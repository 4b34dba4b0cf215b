#pragma once

#include <cstddef>
#include <optional>
#include <span>

namespace celsius {

// Absolute zero on the Fahrenheit scale. Inputs below it are rejected; it is itself valid.
inline constexpr double absolute_zero_fahrenheit = -459.67;

// The conversion, in exactly this order of operations: the TensorFlow graph computes the
// same IEEE double expression so the two paths agree bit for bit.
constexpr double to_celsius(double fahrenheit) noexcept { return (fahrenheit - 32.0) * 5.0 / 9.0; }

enum class value_problem {
  not_finite,           // NaN or an infinity (JSON `NaN`, `Infinity`, or a literal like 1e400)
  below_absolute_zero,  // fahrenheit < -459.67
  result_overflow,      // finite input whose (f - 32) * 5 overflows a double
};

// Checks one input value; nullopt means it converts to a finite Celsius value.
std::optional<value_problem> check_fahrenheit(double fahrenheit) noexcept;

// Converts every value of `in` into `out` (same size).
void to_celsius(std::span<const double> in, std::span<double> out) noexcept;

}  // namespace celsius
