#include "convert.hpp"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <limits>
#include <vector>

namespace celsius {
namespace {

TEST(convert, known_points) {
  EXPECT_EQ(to_celsius(212.0), 100.0);
  EXPECT_EQ(to_celsius(32.0), 0.0);
  EXPECT_EQ(to_celsius(-40.0), -40.0);
  EXPECT_EQ(to_celsius(50.0), 10.0);
  EXPECT_NEAR(to_celsius(absolute_zero_fahrenheit), -273.15, 1e-12);
}

TEST(convert, keeps_the_order_of_operations) {
  // (f - 32) * 5 / 9 and (f - 32) * (5.0 / 9) differ in the last bit for some inputs;
  // the service must compute the former (the TensorFlow graph does the same).
  const double f = 98.6;
  const volatile double five = 5.0, nine = 9.0, thirty_two = 32.0;
  EXPECT_EQ(to_celsius(f), ((f - thirty_two) * five) / nine);
  int differ = 0;
  for (int i = 0; i < 10000; ++i) {
    const double x = -459.67 + i * 0.173;
    if (to_celsius(x) != (x - 32.0) * (5.0 / 9.0)) ++differ;
  }
  EXPECT_GT(differ, 0) << "the test would not notice a reordered formula";
}

TEST(convert, negative_zero_and_subnormals_are_valid) {
  EXPECT_FALSE(check_fahrenheit(-0.0).has_value());
  EXPECT_FALSE(check_fahrenheit(std::numeric_limits<double>::denorm_min()).has_value());
  EXPECT_FALSE(check_fahrenheit(-std::numeric_limits<double>::denorm_min()).has_value());
}

TEST(convert, absolute_zero_is_the_lower_bound) {
  EXPECT_FALSE(check_fahrenheit(absolute_zero_fahrenheit).has_value());
  EXPECT_EQ(check_fahrenheit(std::nextafter(absolute_zero_fahrenheit, -1000.0)), value_problem::below_absolute_zero);
  EXPECT_EQ(check_fahrenheit(-1e300), value_problem::below_absolute_zero);
}

TEST(convert, non_finite_inputs_are_rejected) {
  EXPECT_EQ(check_fahrenheit(std::numeric_limits<double>::quiet_NaN()), value_problem::not_finite);
  EXPECT_EQ(check_fahrenheit(std::numeric_limits<double>::infinity()), value_problem::not_finite);
  EXPECT_EQ(check_fahrenheit(-std::numeric_limits<double>::infinity()), value_problem::not_finite);
}

TEST(convert, overflowing_results_are_rejected_at_the_exact_boundary) {
  // (f - 32) * 5 overflows for f above about DBL_MAX / 5.
  double lo = 1e307, hi = DBL_MAX;
  ASSERT_TRUE(std::isfinite(to_celsius(lo)));
  ASSERT_FALSE(std::isfinite(to_celsius(hi)));
  while (std::nextafter(lo, hi) != hi) {
    const double mid = lo + (hi - lo) / 2;
    (std::isfinite(to_celsius(mid)) ? lo : hi) = mid == lo || mid == hi ? std::nextafter(lo, hi) : mid;
  }
  EXPECT_FALSE(check_fahrenheit(lo).has_value());
  EXPECT_EQ(check_fahrenheit(hi), value_problem::result_overflow);
  EXPECT_EQ(check_fahrenheit(DBL_MAX), value_problem::result_overflow);
}

TEST(convert, span_version_matches_scalar) {
  const std::vector<double> in = {-459.67, -40, 0, 32, 98.6, 212, 1e300};
  std::vector<double> out(in.size());
  to_celsius(in, out);
  for (std::size_t i = 0; i < in.size(); ++i) EXPECT_EQ(out[i], to_celsius(in[i]));
}

}  // namespace
}  // namespace celsius
