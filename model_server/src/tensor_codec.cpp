#include "tensor_codec.hpp"

#include <algorithm>
#include <complex>
#include <cstring>
#include <limits>
#include <string>

namespace celsius::serving {

namespace {

using tensorflow::TensorProto;

// Copies `count` values of type From (from a proto field) into `out` as type To, with
// Tensor::FromProto's fill rules for short or empty fields.
template <typename To, typename Field>
void fill_from_field(const Field& field, std::span<std::byte> out) {
  const std::size_t n = out.size() / sizeof(To);
  const auto in_n = static_cast<std::size_t>(field.size());
  if (n == 0) return;
  auto* begin = reinterpret_cast<std::byte*>(out.data());
  const auto store = [&](std::size_t i, To value) { std::memcpy(begin + i * sizeof(To), &value, sizeof(To)); };
  if (in_n == 0) {
    std::memset(out.data(), 0, out.size());
    return;
  }
  const std::size_t copied = std::min(n, in_n);
  if constexpr (std::is_same_v<To, typename Field::value_type>) {
    std::memcpy(out.data(), field.data(), copied * sizeof(To));
  } else {
    for (std::size_t i = 0; i < copied; ++i) store(i, static_cast<To>(field.Get(static_cast<int>(i))));
  }
  if (copied < n) {
    To last;
    std::memcpy(&last, begin + (copied - 1) * sizeof(To), sizeof(To));
    for (std::size_t i = copied; i < n; ++i) store(i, last);
  }
}

// Complex values travel as (real, imaginary) pairs in scomplex_val / dcomplex_val.
template <typename Real, typename Field>
void fill_complex(const Field& field, std::span<std::byte> out) {
  using value = std::complex<Real>;
  const std::size_t n = out.size() / sizeof(value);
  const std::size_t in_n = static_cast<std::size_t>(field.size()) / 2;
  if (n == 0) return;
  if (in_n == 0) {
    std::memset(out.data(), 0, out.size());
    return;
  }
  const std::size_t copied = std::min(n, in_n);
  std::memcpy(out.data(), field.data(), copied * sizeof(value));
  for (std::size_t i = copied; i < n; ++i) {
    std::memcpy(out.data() + i * sizeof(value), out.data() + (copied - 1) * sizeof(value), sizeof(value));
  }
}

template <typename From, typename Field>
void append_to_field(std::span<const std::byte> data, Field& field) {
  const std::size_t n = data.size() / sizeof(From);
  field.Reserve(static_cast<int>(n));
  for (std::size_t i = 0; i < n; ++i) {
    From value;
    std::memcpy(&value, data.data() + i * sizeof(From), sizeof(From));
    field.AddAlreadyReserved(static_cast<typename Field::value_type>(value));
  }
}

template <typename Field>
void assign_field(std::span<const std::byte> data, Field& field) {
  using value_type = typename Field::value_type;
  const auto n = static_cast<int>(data.size() / sizeof(value_type));
  field.Resize(n, value_type{});
  if (n != 0) std::memcpy(field.mutable_data(), data.data(), data.size());
}

}  // namespace

std::size_t dtype_size(DataType dtype) noexcept {
  switch (dtype) {
    case tensorflow::DT_BOOL:
    case tensorflow::DT_INT8:
    case tensorflow::DT_UINT8:
    case tensorflow::DT_QINT8:
    case tensorflow::DT_QUINT8:
      return 1;
    case tensorflow::DT_INT16:
    case tensorflow::DT_UINT16:
    case tensorflow::DT_QINT16:
    case tensorflow::DT_QUINT16:
    case tensorflow::DT_HALF:
    case tensorflow::DT_BFLOAT16:
      return 2;
    case tensorflow::DT_FLOAT:
    case tensorflow::DT_INT32:
    case tensorflow::DT_UINT32:
    case tensorflow::DT_QINT32:
      return 4;
    case tensorflow::DT_DOUBLE:
    case tensorflow::DT_INT64:
    case tensorflow::DT_UINT64:
    case tensorflow::DT_COMPLEX64:
      return 8;
    case tensorflow::DT_COMPLEX128:
      return 16;
    default:
      return 0;
  }
}

std::string_view dtype_name(DataType dtype) noexcept {
  switch (dtype) {
    case tensorflow::DT_INVALID:
      return "INVALID";
    case tensorflow::DT_FLOAT:
      return "float";
    case tensorflow::DT_DOUBLE:
      return "double";
    case tensorflow::DT_INT32:
      return "int32";
    case tensorflow::DT_UINT8:
      return "uint8";
    case tensorflow::DT_INT16:
      return "int16";
    case tensorflow::DT_INT8:
      return "int8";
    case tensorflow::DT_STRING:
      return "string";
    case tensorflow::DT_COMPLEX64:
      return "complex64";
    case tensorflow::DT_INT64:
      return "int64";
    case tensorflow::DT_BOOL:
      return "bool";
    case tensorflow::DT_QINT8:
      return "qint8";
    case tensorflow::DT_QUINT8:
      return "quint8";
    case tensorflow::DT_QINT32:
      return "qint32";
    case tensorflow::DT_BFLOAT16:
      return "bfloat16";
    case tensorflow::DT_QINT16:
      return "qint16";
    case tensorflow::DT_QUINT16:
      return "quint16";
    case tensorflow::DT_UINT16:
      return "uint16";
    case tensorflow::DT_COMPLEX128:
      return "complex128";
    case tensorflow::DT_HALF:
      return "half";
    case tensorflow::DT_RESOURCE:
      return "resource";
    case tensorflow::DT_VARIANT:
      return "variant";
    case tensorflow::DT_UINT32:
      return "uint32";
    case tensorflow::DT_UINT64:
      return "uint64";
    default:
      return "unknown dtype enum";
  }
}

bool proto_shape(const TensorProto& proto, tensor_shape& shape) {
  const std::size_t size = dtype_size(proto.dtype());
  if (size == 0) return false;
  const auto& shape_proto = proto.tensor_shape();
  if (shape_proto.unknown_rank() || shape_proto.dim_size() > 254) return false;
  shape.dims.clear();
  shape.dims.reserve(static_cast<std::size_t>(shape_proto.dim_size()));
  std::int64_t elements = 1;
  for (const auto& dim : shape_proto.dim()) {
    if (dim.size() < 0) return false;
    if (dim.size() != 0 && elements > std::numeric_limits<std::int64_t>::max() / dim.size()) return false;
    elements *= dim.size();
    shape.dims.push_back(dim.size());
  }
  // The dense buffer must be addressable (and, for tensor_content, match exactly).
  if (elements >
      static_cast<std::int64_t>(std::numeric_limits<std::int64_t>::max() / static_cast<std::int64_t>(size))) {
    return false;
  }
  if (!proto.tensor_content().empty() && proto.tensor_content().size() != static_cast<std::size_t>(elements) * size) {
    return false;
  }
  shape.elements = elements;
  return true;
}

void decode_values(const TensorProto& proto, std::span<std::byte> out) {
  if (!proto.tensor_content().empty()) {
    std::memcpy(out.data(), proto.tensor_content().data(), out.size());
    return;
  }
  switch (proto.dtype()) {
    case tensorflow::DT_FLOAT:
      return fill_from_field<float>(proto.float_val(), out);
    case tensorflow::DT_DOUBLE:
      return fill_from_field<double>(proto.double_val(), out);
    case tensorflow::DT_INT32:
    case tensorflow::DT_QINT32:
      return fill_from_field<std::int32_t>(proto.int_val(), out);
    case tensorflow::DT_INT16:
    case tensorflow::DT_QINT16:
      return fill_from_field<std::int16_t>(proto.int_val(), out);
    case tensorflow::DT_UINT16:
    case tensorflow::DT_QUINT16:
      return fill_from_field<std::uint16_t>(proto.int_val(), out);
    case tensorflow::DT_INT8:
    case tensorflow::DT_QINT8:
      return fill_from_field<std::int8_t>(proto.int_val(), out);
    case tensorflow::DT_UINT8:
    case tensorflow::DT_QUINT8:
      return fill_from_field<std::uint8_t>(proto.int_val(), out);
    case tensorflow::DT_INT64:
      return fill_from_field<std::int64_t>(proto.int64_val(), out);
    case tensorflow::DT_UINT32:
      return fill_from_field<std::uint32_t>(proto.uint32_val(), out);
    case tensorflow::DT_UINT64:
      return fill_from_field<std::uint64_t>(proto.uint64_val(), out);
    case tensorflow::DT_BOOL:
      return fill_from_field<bool>(proto.bool_val(), out);
    case tensorflow::DT_HALF:
    case tensorflow::DT_BFLOAT16:
      return fill_from_field<std::uint16_t>(proto.half_val(), out);
    case tensorflow::DT_COMPLEX64:
      return fill_complex<float>(proto.scomplex_val(), out);
    case tensorflow::DT_COMPLEX128:
      return fill_complex<double>(proto.dcomplex_val(), out);
    default:
      std::memset(out.data(), 0, out.size());
  }
}

void encode_tensor(DataType dtype, std::span<const std::int64_t> dims, std::span<const std::byte> data,
                   TensorProto& proto, bool as_content) {
  proto.set_dtype(dtype);
  auto* shape = proto.mutable_tensor_shape();
  shape->clear_dim();
  for (const std::int64_t d : dims) shape->add_dim()->set_size(d);
  if (as_content) {
    proto.set_tensor_content(reinterpret_cast<const char*>(data.data()), data.size());
    return;
  }
  switch (dtype) {
    case tensorflow::DT_FLOAT:
      return assign_field(data, *proto.mutable_float_val());
    case tensorflow::DT_DOUBLE:
      return assign_field(data, *proto.mutable_double_val());
    case tensorflow::DT_INT32:
    case tensorflow::DT_QINT32:
      return assign_field(data, *proto.mutable_int_val());
    case tensorflow::DT_INT16:
    case tensorflow::DT_QINT16:
      return append_to_field<std::int16_t>(data, *proto.mutable_int_val());
    case tensorflow::DT_UINT16:
    case tensorflow::DT_QUINT16:
      return append_to_field<std::uint16_t>(data, *proto.mutable_int_val());
    case tensorflow::DT_INT8:
    case tensorflow::DT_QINT8:
      return append_to_field<std::int8_t>(data, *proto.mutable_int_val());
    case tensorflow::DT_UINT8:
    case tensorflow::DT_QUINT8:
      return append_to_field<std::uint8_t>(data, *proto.mutable_int_val());
    case tensorflow::DT_INT64:
      return assign_field(data, *proto.mutable_int64_val());
    case tensorflow::DT_UINT32:
      return assign_field(data, *proto.mutable_uint32_val());
    case tensorflow::DT_UINT64:
      return assign_field(data, *proto.mutable_uint64_val());
    case tensorflow::DT_BOOL:
      return append_to_field<bool>(data, *proto.mutable_bool_val());
    case tensorflow::DT_HALF:
    case tensorflow::DT_BFLOAT16:
      return append_to_field<std::uint16_t>(data, *proto.mutable_half_val());
    case tensorflow::DT_COMPLEX64:
      return assign_field(data, *proto.mutable_scomplex_val());
    case tensorflow::DT_COMPLEX128:
      return assign_field(data, *proto.mutable_dcomplex_val());
    default:
      proto.set_tensor_content(reinterpret_cast<const char*>(data.data()), data.size());
  }
}

}  // namespace celsius::serving
