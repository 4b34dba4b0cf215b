// TensorProto <-> dense tensors with Tensor::FromProto's / AsProtoField's rules.
#include "tensor_codec.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace celsius::serving {
namespace {

tensorflow::TensorProto doubles(std::vector<std::int64_t> dims, std::vector<double> values) {
  tensorflow::TensorProto p;
  p.set_dtype(tensorflow::DT_DOUBLE);
  for (auto d : dims) p.mutable_tensor_shape()->add_dim()->set_size(d);
  for (auto v : values) p.add_double_val(v);
  return p;
}

std::vector<double> decode(const tensorflow::TensorProto& p) {
  tensor_shape shape;
  EXPECT_TRUE(proto_shape(p, shape));
  std::vector<double> out(static_cast<std::size_t>(shape.elements));
  decode_values(p, std::as_writable_bytes(std::span(out)));
  return out;
}

TEST(tensor_codec, shapes_like_tensor_from_proto) {
  tensor_shape shape;
  EXPECT_TRUE(proto_shape(doubles({2, 3}, {}), shape));
  EXPECT_EQ(shape.elements, 6);
  EXPECT_EQ(shape.dims, (std::vector<std::int64_t>{2, 3}));
  EXPECT_TRUE(proto_shape(doubles({}, {4}), shape));
  EXPECT_EQ(shape.elements, 1);
  EXPECT_FALSE(proto_shape(doubles({-1}, {}), shape));
  auto unknown = doubles({}, {});
  unknown.mutable_tensor_shape()->set_unknown_rank(true);
  EXPECT_FALSE(proto_shape(unknown, shape));
  auto invalid = doubles({1}, {1});
  invalid.set_dtype(tensorflow::DT_INVALID);
  EXPECT_FALSE(proto_shape(invalid, shape));
  auto content = doubles({2}, {});
  content.set_tensor_content(std::string(15, '\0'));  // 2 doubles are 16 bytes
  EXPECT_FALSE(proto_shape(content, shape));
  EXPECT_FALSE(proto_shape(doubles({1LL << 62, 1LL << 62}, {}), shape));
}

TEST(tensor_codec, typed_values_fill_like_tensorflow) {
  EXPECT_EQ(decode(doubles({3}, {1, 2, 3})), (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(decode(doubles({4}, {7})), (std::vector<double>{7, 7, 7, 7}));     // one value broadcasts
  EXPECT_EQ(decode(doubles({4}, {1, 2})), (std::vector<double>{1, 2, 2, 2}));  // the last one repeats
  EXPECT_EQ(decode(doubles({2}, {})), (std::vector<double>{0, 0}));            // none: zeros
  EXPECT_EQ(decode(doubles({2}, {1, 2, 3})), (std::vector<double>{1, 2}));     // extras are ignored
}

TEST(tensor_codec, tensor_content_is_raw_bytes) {
  auto p = doubles({2}, {});
  const double raw[] = {-459.67, 5e-324};
  p.set_tensor_content(std::string(reinterpret_cast<const char*>(raw), sizeof raw));
  EXPECT_EQ(decode(p), (std::vector<double>{-459.67, 5e-324}));
}

TEST(tensor_codec, encode_round_trips_every_supported_dtype) {
  const tensorflow::DataType types[] = {tensorflow::DT_FLOAT,    tensorflow::DT_DOUBLE,    tensorflow::DT_INT32,
                                        tensorflow::DT_INT16,    tensorflow::DT_INT8,      tensorflow::DT_UINT8,
                                        tensorflow::DT_UINT16,   tensorflow::DT_INT64,     tensorflow::DT_UINT32,
                                        tensorflow::DT_UINT64,   tensorflow::DT_BOOL,      tensorflow::DT_HALF,
                                        tensorflow::DT_BFLOAT16, tensorflow::DT_COMPLEX64, tensorflow::DT_COMPLEX128};
  for (const auto dtype : types) {
    const std::size_t size = dtype_size(dtype);
    ASSERT_GT(size, 0u) << dtype_name(dtype);
    std::vector<std::byte> data(size * 3);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>(i % 7 == 0 ? 1 : 0);
    for (const bool as_content : {false, true}) {
      tensorflow::TensorProto p;
      const std::int64_t dims[] = {3};
      encode_tensor(dtype, dims, data, p, as_content);
      EXPECT_EQ(p.tensor_content().empty(), !as_content);
      tensor_shape shape;
      ASSERT_TRUE(proto_shape(p, shape)) << dtype_name(dtype);
      std::vector<std::byte> back(data.size());
      decode_values(p, back);
      EXPECT_EQ(back, data) << dtype_name(dtype) << " as_content=" << as_content;
    }
  }
  EXPECT_EQ(dtype_size(tensorflow::DT_STRING), 0u);
  EXPECT_EQ(dtype_name(tensorflow::DT_DOUBLE), "double");
}

}  // namespace
}  // namespace celsius::serving
