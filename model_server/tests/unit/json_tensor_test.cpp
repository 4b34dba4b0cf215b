// TF Serving's REST JSON (json_tensor.hpp): request parsing, answer formatting, the error
// messages clients match on.
#include "json_tensor.hpp"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <algorithm>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

namespace celsius::serving {
namespace {

using tensorflow::serving::PredictRequest;

// A signature with one DT_DOUBLE input "fahrenheit" (or the given inputs).
class json_request : public ::testing::Test {
 protected:
  json_request() {
    (*inputs_)["fahrenheit"].set_dtype(tensorflow::DT_DOUBLE);
    (*inputs_)["fahrenheit"].set_name("serving_default_fahrenheit:0");
  }
  status parse(std::string_view json, PredictRequest& request, json_format& format) {
    return fill_predict_request_from_json(
        json,
        [this](const std::string& signature, const input_map*& out) {
          last_signature_ = signature;
          out = inputs_.get();
          return status();
        },
        request, format);
  }
  status parse(std::string_view json) {
    PredictRequest request;
    json_format format;
    return parse(json, request, format);
  }
  std::unique_ptr<input_map> inputs_ = std::make_unique<input_map>();
  std::string last_signature_;
};

TEST_F(json_request, row_form_is_a_batch_of_instances) {
  PredictRequest request;
  json_format format;
  ASSERT_TRUE(parse(R"({"instances": [32, 212.5, -459.67]})", request, format).ok());
  EXPECT_EQ(format, json_format::row);
  const auto& t = request.inputs().at("fahrenheit");
  EXPECT_EQ(t.dtype(), tensorflow::DT_DOUBLE);
  ASSERT_EQ(t.tensor_shape().dim_size(), 1);
  EXPECT_EQ(t.tensor_shape().dim(0).size(), 3);
  ASSERT_EQ(t.double_val_size(), 3);
  EXPECT_EQ(t.double_val(0), 32.0);
  EXPECT_EQ(t.double_val(2), -459.67);
  EXPECT_EQ(last_signature_, "");
}

TEST_F(json_request, named_rows_columns_and_signature_name) {
  PredictRequest request;
  json_format format;
  ASSERT_TRUE(parse(R"({"signature_name": "serving_default", "instances": [{"fahrenheit": 1}, {"fahrenheit": 2}]})",
                    request, format)
                  .ok());
  EXPECT_EQ(request.model_spec().signature_name(), "serving_default");
  EXPECT_EQ(request.inputs().at("fahrenheit").double_val_size(), 2);
  PredictRequest columnar;
  ASSERT_TRUE(parse(R"({"inputs": {"fahrenheit": [[1, 2], [3, 4]]}})", columnar, format).ok());
  EXPECT_EQ(format, json_format::columnar);
  EXPECT_EQ(columnar.inputs().at("fahrenheit").tensor_shape().dim_size(), 2);
  PredictRequest scalar;
  ASSERT_TRUE(parse(R"({"inputs": 5})", scalar, format).ok());
  EXPECT_EQ(scalar.inputs().at("fahrenheit").tensor_shape().dim_size(), 0);
  EXPECT_EQ(scalar.inputs().at("fahrenheit").double_val(0), 5.0);
}

TEST_F(json_request, nan_and_infinity_tokens_are_numbers) {
  PredictRequest request;
  json_format format;
  ASSERT_TRUE(parse(R"({"instances": [NaN, Infinity, -Infinity]})", request, format).ok());
  const auto& v = request.inputs().at("fahrenheit").double_val();
  EXPECT_TRUE(std::isnan(v[0]));
  EXPECT_EQ(v[1], std::numeric_limits<double>::infinity());
  EXPECT_EQ(v[2], -std::numeric_limits<double>::infinity());
}

TEST_F(json_request, every_double_reads_back_bit_for_bit) {
  std::mt19937_64 rng(3);
  for (int i = 0; i < 40000; ++i) {
    const std::uint64_t bits = rng();
    double v;
    std::memcpy(&v, &bits, sizeof v);
    if (!std::isfinite(v)) continue;
    // Written as TF Serving writes numbers: an integer-looking text above 2^53 would be
    // refused ("without loss of precision"), see errors_carry_tf_servings_messages.
    const std::string formatted = format_decimal(v);
    const char* text = formatted.c_str();
    PredictRequest request;
    json_format format;
    ASSERT_TRUE(parse(std::string(R"({"instances": [)") + text + "]}", request, format).ok()) << text;
    const double got = request.inputs().at("fahrenheit").double_val(0);
    ASSERT_EQ(std::memcmp(&got, &v, sizeof v), 0) << text;
  }
}

struct error_case {
  const char* json;
  const char* message;
};

TEST_F(json_request, errors_carry_tf_servings_messages) {
  const error_case cases[] = {
      {"", "JSON Parse error: The document is empty"},
      {"{bad", "JSON Parse error: Missing a name for object member. at offset: 1"},
      {"[1]", "JSON Value: [\n    1\n] Is not object"},
      {R"({"instances": [1], "inputs": [1]})", "Not formatted correctly expecting only one of 'inputs' or 'instances'"},
      {R"({"signature_name": 5, "instances": [1]})", "'signature_name' key must be a string value."},
      {R"({"instances": 1})", "Excepting 'instances' to be an list/array"},
      {R"({"instances": []})", "No values in 'instances' array"},
      {R"({"signature_name": "serving_default"})", "Missing 'inputs' or 'instances' key"},
      {R"({"instances": ["hot"]})", "JSON Value: \"hot\" Type: String is not of expected type: double"},
      {R"({"instances": [true]})", "Type: True is not of expected type: double"},
      {R"({"instances": [[1, 2], [3]]})", "Expecting tensor size: 2 but got: 1"},
      {R"({"instances": [1, [2]]})", "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "},
      {R"({"instances": [9007199254740993]})", "Cannot convert JSON value: 9007199254740993 to double without loss"},
      {R"({"inputs": {"kelvin": [1]}})", "Missing named input: fahrenheit in 'inputs' object."},
      {R"({"instances": [{"kelvin": 1}]})", "JSON object: does not have named input: kelvin"},
  };
  for (const auto& c : cases) {
    const status s = parse(c.json);
    EXPECT_EQ(s.error_code(), code::INVALID_ARGUMENT) << c.json;
    EXPECT_NE(s.message().find(c.message), std::string::npos) << c.json << " -> " << s.message();
  }
}

TEST_F(json_request, the_lookup_error_is_passed_on) {
  PredictRequest request;
  json_format format;
  const status s = fill_predict_request_from_json(R"({"instances": [1]})",
                                                  [](const std::string&, const input_map*&) {
                                                    return not_found_error("Servable not found for request: Latest(x)");
                                                  },
                                                  request, format);
  EXPECT_EQ(s.error_code(), code::NOT_FOUND);
}

TEST(json_answer, number_formatting_is_tf_servings) {
  EXPECT_EQ(format_decimal(100.0), "100.0");
  EXPECT_EQ(format_decimal(-40.0), "-40.0");
  EXPECT_EQ(format_decimal(-0.0), "-0.0");
  EXPECT_EQ(format_decimal(0.1), "0.1");
  EXPECT_EQ(format_decimal(37.77777777777778), "37.777777777777779");
  EXPECT_EQ(format_decimal(1e300), "1e+300");
  EXPECT_EQ(format_decimal(9000000.0), "9e+06");
  EXPECT_EQ(format_decimal(5e-324), "4.94066e-324");  // six digits read back to the same subnormal
  EXPECT_EQ(format_decimal(2.2250738585072014e-308), "2.2250738585072014e-308");
  EXPECT_EQ(format_decimal(std::nan("")), "NaN");
  EXPECT_EQ(format_decimal(-std::numeric_limits<double>::infinity()), "-Infinity");
  EXPECT_EQ(format_decimal(0.2f), "0.2");
  EXPECT_EQ(format_decimal(1.0f / 3.0f), "0.333333343");
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> d(-500, 500);
  for (int i = 0; i < 10000; ++i) {
    const double v = d(rng);
    EXPECT_EQ(std::strtod(format_decimal(v).c_str(), nullptr), v);
  }
}

TEST(json_answer, row_and_columnar_layouts) {
  google::protobuf::Map<std::string, tensorflow::TensorProto> outputs;
  auto& t = outputs["celsius"];
  t.set_dtype(tensorflow::DT_DOUBLE);
  t.mutable_tensor_shape()->add_dim()->set_size(2);
  t.add_double_val(0.0);
  t.add_double_val(100.0);
  std::string json;
  ASSERT_TRUE(make_json_from_tensors(outputs, json_format::row, json).ok());
  EXPECT_EQ(json, "{\n    \"predictions\": [0.0, 100.0\n    ]\n}");
  ASSERT_TRUE(make_json_from_tensors(outputs, json_format::columnar, json).ok());
  EXPECT_EQ(json, "{\n    \"outputs\": [\n        0.0,\n        100.0\n    ]\n}");
  auto& second = outputs["kelvin"];
  second = t;
  ASSERT_TRUE(make_json_from_tensors(outputs, json_format::row, json).ok());
  EXPECT_NE(json.find(R"("celsius": 0.0)"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("kelvin": 100.0)"), std::string::npos) << json;
}

TEST(json_answer, the_string_is_replaced_not_appended_to) {
  google::protobuf::Map<std::string, tensorflow::TensorProto> outputs;
  auto& t = outputs["celsius"];
  t.set_dtype(tensorflow::DT_DOUBLE);
  t.mutable_tensor_shape()->add_dim()->set_size(1);
  t.add_double_val(37.0);
  for (const json_format format : {json_format::row, json_format::columnar}) {
    std::string json = "an earlier answer";
    ASSERT_TRUE(make_json_from_tensors(outputs, format, json).ok());
    EXPECT_EQ(json.rfind("{", 0), 0u) << json;
  }
}

// Nesting past the writer's first stack buffer (24 levels) and more outputs than the
// answer's first sorting buffer (4) still give every value, in order, as valid JSON.
TEST(json_answer, deep_tensors_and_many_outputs) {
  google::protobuf::Map<std::string, tensorflow::TensorProto> outputs;
  const std::vector<std::string> names = {"f", "e", "d", "c", "b", "a"};
  for (std::size_t i = 0; i < names.size(); ++i) {
    auto& t = outputs[names[i]];
    t.set_dtype(tensorflow::DT_INT64);
    for (int d = 0; d < 40; ++d) t.mutable_tensor_shape()->add_dim()->set_size(1);
    t.add_int64_val(static_cast<std::int64_t>(i) + 100);
  }
  for (const json_format format : {json_format::row, json_format::columnar}) {
    std::string json;
    ASSERT_TRUE(make_json_from_tensors(outputs, format, json).ok());
    rapidjson::Document doc;
    ASSERT_FALSE(doc.Parse(json.c_str()).HasParseError()) << json;
    // row: "predictions" [ one instance { name: 39 arrays } ]; columnar: "outputs" { name: 40 arrays }
    const auto count = [&](char c) { return std::count(json.begin(), json.end(), c); };
    EXPECT_EQ(count('['), static_cast<long>(names.size() * (format == json_format::row ? 39 : 40) +
                                            (format == json_format::row ? 1 : 0)));
    std::size_t last = 0;
    for (std::size_t i = names.size(); i-- > 0;) {  // "a" (105) first: names are sorted
      const auto at = json.find("\"" + names[i] + "\"");
      ASSERT_NE(at, std::string::npos) << json;
      EXPECT_GT(at, last);
      last = at;
      EXPECT_NE(json.find(std::to_string(100 + i)), std::string::npos);
    }
  }
}

TEST(json_answer, scalar_outputs_cannot_be_rows) {
  google::protobuf::Map<std::string, tensorflow::TensorProto> outputs;
  auto& t = outputs["y"];
  t.set_dtype(tensorflow::DT_FLOAT);
  t.add_float_val(1.5f);
  std::string json;
  const status s = make_json_from_tensors(outputs, json_format::row, json);
  EXPECT_EQ(s.message(), "Tensor name: y has no shape information ");
  ASSERT_TRUE(make_json_from_tensors(outputs, json_format::columnar, json).ok());
  EXPECT_EQ(json, "{\n    \"outputs\": 1.5\n}");
}

TEST(json_answer, error_bodies_are_valid_utf8_json) {
  EXPECT_EQ(make_json_error("a \"quoted\"\nline"), "{\n    \"error\": \"a \\\"quoted\\\"\\nline\"\n}");
  EXPECT_EQ(valid_utf8("ok \xC3\xA9 \xFF\xC3 end"), "ok \xC3\xA9 \xEF\xBF\xBD\xEF\xBF\xBD end");
  EXPECT_EQ(valid_utf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
  EXPECT_EQ(valid_utf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong
  EXPECT_EQ(valid_utf8("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
}

}  // namespace
}  // namespace celsius::serving
