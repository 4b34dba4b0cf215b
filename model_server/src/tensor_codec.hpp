#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "tensorflow_tensor.pb.h"

namespace celsius::serving {

using tensorflow::DataType;

// Bytes per element of the fixed-size dtypes this server carries (float, double, the
// integer and quantized types, bool, half, bfloat16, complex64/128); 0 for the others
// (DT_STRING, DT_RESOURCE, DT_VARIANT, DT_INVALID).
std::size_t dtype_size(DataType dtype) noexcept;

// TensorFlow's DataTypeString: "float", "double", "int32", ... ("unknown dtype enum (N)").
std::string_view dtype_name(DataType dtype) noexcept;

struct tensor_shape {
  std::vector<std::int64_t> dims;
  std::int64_t elements = 1;
};

// The shape of a TensorProto if TensorFlow's Tensor::FromProto would accept it
// (core/framework/tensor.cc): a known rank of at most 254, no negative dimension, an
// element count that fits in int64, and for tensor_content exactly elements * dtype_size
// bytes. False otherwise (the caller answers "tensor parsing error: <alias>").
bool proto_shape(const tensorflow::TensorProto& proto, tensor_shape& shape);

// Writes the values of `proto` densely (row-major, host byte order) into `out`, which holds
// exactly elements * dtype_size(proto.dtype()) bytes. From tensor_content when it is set,
// else from the typed *_val field with Tensor::FromProto's rules: no values give zeros,
// fewer values than elements repeat the last one, extra values are ignored.
void decode_values(const tensorflow::TensorProto& proto, std::span<std::byte> out);

// A dense tensor into a TensorProto the way Tensor::AsProtoField writes it: dtype, shape,
// and the typed *_val field (what TF Serving's Predict answers carry), or, with
// `as_content`, Tensor::AsProtoTensorContent's raw tensor_content.
void encode_tensor(DataType dtype, std::span<const std::int64_t> dims, std::span<const std::byte> data,
                   tensorflow::TensorProto& proto, bool as_content = false);

}  // namespace celsius::serving
