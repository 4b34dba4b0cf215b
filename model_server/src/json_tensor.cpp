#include "json_tensor.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <rapidjson/document.h>
#include <rapidjson/encodedstream.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/prettywriter.h>

#include <algorithm>
#include <boost/container/small_vector.hpp>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <set>
#include <vector>

#include "tensor_codec.hpp"

namespace celsius::serving {

namespace {

using tensorflow::TensorProto;
using tensorflow::TensorShapeProto;
using tensor_map = google::protobuf::Map<std::string, TensorProto>;

// RapidJSON's output stream concept (Put, Flush) over a std::string: an answer's JSON is
// written into the string it is sent from, with no StringBuffer to fill and copy out.
struct string_output {
  using Ch = char;
  std::string& text;
  void Put(char c) { text.push_back(c); }
  void Flush() {}
};
using writer_type =
    rapidjson::PrettyWriter<string_output, rapidjson::UTF8<>, rapidjson::UTF8<>, rapidjson::MemoryPoolAllocator<>>;

// A pretty writer appending to `text` whose stack of nesting levels (16 bytes a level) starts
// in a 512-byte buffer inside this object: 16 levels at first, grown in place to 24 (RapidJSON
// grows a stack by half; the pool's chunk header takes 24 bytes), so a tensor of up to about
// 22 dimensions is written without the heap; deeper nesting takes a 64 KiB chunk from malloc.
// Given no allocator, RapidJSON's writer would malloc its own (one allocation, and a chunk).
// `text` is replaced: emptied, with room for a small answer in one allocation (growing from
// empty took two).
class json_writer {
 public:
  explicit json_writer(std::string& text) : out_{text}, writer(out_, &pool_, 16) {
    text.clear();
    text.reserve(128);
  }
  json_writer(const json_writer&) = delete;
  json_writer& operator=(const json_writer&) = delete;

 private:
  alignas(8) char buffer_[512];
  rapidjson::MemoryPoolAllocator<> pool_{buffer_, sizeof buffer_};
  string_output out_;

 public:
  writer_type writer;
};

// TF Serving parses with kParseNanAndInfFlag; full precision makes every number read back
// to the double its text denotes (RapidJSON's default path can be 1 ULP off).
constexpr unsigned parse_flags = rapidjson::kParseNanAndInfFlag | rapidjson::kParseFullPrecisionFlag;

constexpr const char* signature_key = "signature_name";
constexpr const char* instances_key = "instances";
constexpr const char* inputs_key = "inputs";
constexpr const char* predictions_key = "predictions";
constexpr const char* outputs_key = "outputs";
constexpr const char* base64_key = "b64";

std::string_view json_type_string(const rapidjson::Value& value) {
  switch (value.GetType()) {
    case rapidjson::kNullType:
      return "Null";
    case rapidjson::kFalseType:
      return "False";
    case rapidjson::kTrueType:
      return "True";
    case rapidjson::kObjectType:
      return "Object";
    case rapidjson::kArrayType:
      return "Array";
    case rapidjson::kStringType:
      return "String";
    case rapidjson::kNumberType:
      return "Number";
  }
  return "Unknown";
}

template <typename T>
bool write_decimal(writer_type& writer, T value) {
  const std::string text = format_decimal(value);
  return writer.RawValue(text.data(), text.size(), rapidjson::kNumberType);
}

// A JSON value as text, for error messages (json_tensor.cc, JsonValueToString): pretty-
// printed, and a number that fits a float is written as that float.
std::string json_value_to_string(const rapidjson::Value& value) {
  std::string text;
  json_writer json(text);
  writer_type& writer = json.writer;
  if (value.IsFloat()) {
    write_decimal(writer, value.GetFloat());
  } else if (value.IsDouble()) {
    write_decimal(writer, value.GetDouble());
  } else {
    value.Accept(writer);
  }
  return text;
}

template <typename... Args>
status format_error(const rapidjson::Value& value, const Args&... parts) {
  std::string message = "JSON Value: " + json_value_to_string(value) + " ";
  (message.append(parts), ...);
  return invalid_argument(std::move(message));
}

status type_error(const rapidjson::Value& value, tensorflow::DataType dtype) {
  return invalid_argument(fmt::format("JSON Value: {} Type: {} is not of expected type: {}",
                                      json_value_to_string(value), json_type_string(value), dtype_name(dtype)));
}

status lossy_decimal_error(const rapidjson::Value& value, std::string_view target) {
  return invalid_argument(fmt::format("Cannot convert JSON value: {} to {} without loss of precision.",
                                      json_value_to_string(value), target));
}

std::string shape_to_string(const TensorShapeProto& shape) {
  if (shape.unknown_rank()) return "[?]";
  std::string text = "[";
  for (int i = 0; i < shape.dim_size(); ++i) {
    if (i != 0) text += ',';
    text += std::to_string(shape.dim(i).size());
  }
  return text + "]";
}

bool same_shape(const TensorShapeProto& a, const TensorShapeProto& b) {
  if (a.unknown_rank() || b.unknown_rank() || a.dim_size() != b.dim_size()) return false;
  for (int i = 0; i < a.dim_size(); ++i) {
    if (a.dim(i).size() != b.dim(i).size()) return false;
  }
  return true;
}

template <typename T>
bool is_lossless_decimal(const rapidjson::Value& value) {
  if (!std::isfinite(value.GetDouble())) return true;
  constexpr std::int64_t max_int = (std::int64_t{1} << std::numeric_limits<T>::digits) - 1;
  if (value.IsUint64()) return value.GetUint64() <= static_cast<std::uint64_t>(max_int);
  if (value.IsInt64()) return std::llabs(value.GetInt64()) <= max_int;
  return value.GetDouble() <= static_cast<double>(std::numeric_limits<T>::max()) &&
         value.GetDouble() >= static_cast<double>(std::numeric_limits<T>::lowest());
}

status add_value_to_tensor(const rapidjson::Value& value, tensorflow::DataType dtype, TensorProto& tensor) {
  switch (dtype) {
    case tensorflow::DT_FLOAT:
      if (!value.IsNumber()) return type_error(value, dtype);
      if (!is_lossless_decimal<float>(value)) return lossy_decimal_error(value, "float");
      tensor.add_float_val(value.GetFloat());
      break;
    case tensorflow::DT_DOUBLE:
      if (!value.IsNumber()) return type_error(value, dtype);
      if (!is_lossless_decimal<double>(value)) return lossy_decimal_error(value, "double");
      tensor.add_double_val(value.GetDouble());
      break;
    case tensorflow::DT_INT32:
    case tensorflow::DT_INT16:
    case tensorflow::DT_INT8:
    case tensorflow::DT_UINT8:
      if (!value.IsInt()) return type_error(value, dtype);
      tensor.add_int_val(value.GetInt());
      break;
    case tensorflow::DT_INT64:
      if (!value.IsInt64()) return type_error(value, dtype);
      tensor.add_int64_val(value.GetInt64());
      break;
    case tensorflow::DT_BOOL:
      if (!value.IsBool()) return type_error(value, dtype);
      tensor.add_bool_val(value.GetBool());
      break;
    case tensorflow::DT_UINT32:
      if (!value.IsUint()) return type_error(value, dtype);
      tensor.add_uint32_val(value.GetUint());
      break;
    case tensorflow::DT_UINT64:
      if (!value.IsUint64()) return type_error(value, dtype);
      tensor.add_uint64_val(value.GetUint64());
      break;
    default:
      // DT_STRING included: this server runs no string tensors (see README).
      return unimplemented(
          fmt::format("Conversion of JSON Value: {} to type: {}", json_value_to_string(value), dtype_name(dtype)));
  }
  return {};
}

// The shape of a (nested) JSON list, following the first element at each level; nothing
// for a scalar.
void dense_shape(const rapidjson::Value& value, TensorShapeProto& shape) {
  if (!value.IsArray()) return;
  const auto size = value.Size();
  shape.add_dim()->set_size(size);
  if (size > 0) dense_shape(value[0], shape);
}

// The first member called `name` (as FindMember), or null. By pointer: comparing RapidJSON
// 1.1's member iterators is ambiguous in C++20 (reversed operator candidates).
const rapidjson::Value* find_member(const rapidjson::Value& object, std::string_view name) {
  for (const auto& member : object.GetObject()) {
    if (std::string_view(member.name.GetString(), member.name.GetStringLength()) == name) return &member.value;
  }
  return nullptr;
}

bool is_base64_object(const rapidjson::Value& value) {
  if (!value.IsObject()) return false;
  const rapidjson::Value* b64 = find_member(value, base64_key);
  return b64 != nullptr && value.MemberCount() == 1 && b64->IsString();
}

status fill_tensor_proto(const rapidjson::Value& value, int level, tensorflow::DataType dtype, int& count,
                         TensorProto& tensor) {
  const int rank = tensor.tensor_shape().dim_size();
  if (!value.IsArray()) {
    if (level != rank) {
      return invalid_argument(
          fmt::format("JSON Value: {} found at incorrect level: {} in the JSON DOM. Expected at "
                      "level: {}",
                      json_value_to_string(value), level + 1, rank));
    }
    status result = value.IsObject() ? type_error(value, dtype) : add_value_to_tensor(value, dtype, tensor);
    if (result.ok()) ++count;
    return result;
  }
  if (level >= rank) {
    return invalid_argument(fmt::format("Encountered list at unexpected level: {} expected < {}", level, rank));
  }
  if (static_cast<std::int64_t>(value.Size()) != tensor.tensor_shape().dim(level).size()) {
    return invalid_argument(fmt::format("Encountered list at unexpected size: {} at level: {} expected size: {}",
                                        value.Size(), level, tensor.tensor_shape().dim(level).size()));
  }
  for (const auto& element : value.GetArray()) {
    if (status s = fill_tensor_proto(element, level + 1, dtype, count, tensor); !s.ok()) return s;
  }
  return {};
}

// The size and shape of each input's first instance, which every later instance must match.
// Most requests have one or two inputs: their entries need no heap of their own (copying a
// non-scalar instance's shape still allocates its dimensions).
class instance_shapes {
 public:
  struct entry {
    std::string name;
    int size = 0;
    TensorShapeProto shape;
  };
  entry* find(const std::string& name) {
    for (auto& e : entries_) {
      if (e.name == name) return &e;
    }
    return nullptr;
  }
  void add(const std::string& name, int size, const TensorShapeProto& shape) {
    entries_.push_back({name, size, shape});
  }

 private:
  boost::container::small_vector<entry, 2> entries_;
};

status add_instance_item(const rapidjson::Value& item, const std::string& name, const input_map& inputs,
                         instance_shapes& seen, tensor_map& tensors) {
  const auto info = inputs.find(name);
  if (info == inputs.end()) return invalid_argument("JSON object: does not have named input: " + name);
  int size = 0;
  const auto dtype = info->second.dtype();
  TensorProto& tensor = tensors[name];
  tensor.mutable_tensor_shape()->Clear();
  dense_shape(item, *tensor.mutable_tensor_shape());
  if (status s = fill_tensor_proto(item, 0, dtype, size, tensor); !s.ok()) return s;
  const instance_shapes::entry* known = seen.find(name);
  if (known == nullptr) {
    seen.add(name, size, tensor.tensor_shape());
  } else if (known->size != size) {
    return invalid_argument(fmt::format("Expecting tensor size: {} but got: {}", known->size, size));
  } else if (!same_shape(known->shape, tensor.tensor_shape())) {
    return invalid_argument(fmt::format("Expecting shape {} but got: {}", shape_to_string(known->shape),
                                        shape_to_string(tensor.tensor_shape())));
  }
  return {};
}

status fill_from_instances(const rapidjson::Value& instances, const input_map& inputs, tensor_map& tensors) {
  const auto is_element_object = [](const rapidjson::Value& v) { return v.IsObject() && !is_base64_object(v); };
  if (!instances[0].IsObject() && inputs.size() > 1) {
    return invalid_argument(
        "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
        "tensorinfo_map");
  }
  const bool objects = is_element_object(instances[0]);
  std::set<std::string> input_names;  // what each object must name (not needed for a plain list)
  if (objects) {
    for (const auto& [name, _] : inputs) input_names.insert(name);
  }

  tensors.clear();
  instance_shapes seen;
  int count = 0;
  for (const auto& element : instances.GetArray()) {
    if (objects) {
      if (!is_element_object(element)) {
        return invalid_argument(fmt::format("Expecting object but got list at item {} of input list", count));
      }
      std::set<std::string> keys;
      for (const auto& member : element.GetObject()) {
        const std::string name(member.name.GetString(), member.name.GetStringLength());
        keys.insert(name);
        if (status s = add_instance_item(member.value, name, inputs, seen, tensors); !s.ok()) {
          return invalid_argument(
              fmt::format("Failed to process element: {} key: {} of 'instances' list. Error: {}: {}", count, name,
                          code_name(s.error_code()), s.message()));
        }
      }
      if (keys != input_names) {
        return invalid_argument(
            fmt::format("Failed to process element: {} of 'instances' list. JSON object: {} must "
                        "only have keys: {}",
                        count, json_value_to_string(element), fmt::join(input_names, ",")));
      }
    } else {
      if (is_element_object(element)) {
        return invalid_argument(fmt::format("Expecting value/list but got object at item {} of input list", count));
      }
      const std::string& name = inputs.begin()->first;
      if (status s = add_instance_item(element, name, inputs, seen, tensors); !s.ok()) {
        return invalid_argument(fmt::format("Failed to process element: {} of 'instances' list. Error: {}: {}", count,
                                            code_name(s.error_code()), s.message()));
      }
    }
    ++count;
  }
  // Every instance is one row of the batch: shape = [count] + the instance's shape.
  for (auto& [name, tensor] : tensors) {
    tensor.set_dtype(inputs.at(name).dtype());
    const instance_shapes::entry* instance = seen.find(name);  // every tensor here came with one
    if (instance == nullptr) return internal_error("no instance shape for input " + name);
    auto* shape = tensor.mutable_tensor_shape();
    shape->Clear();
    shape->add_dim()->set_size(count);
    for (const auto& d : instance->shape.dim()) shape->add_dim()->set_size(d.size());
  }
  return {};
}

status fill_from_inputs(const rapidjson::Value& value, const input_map& inputs, tensor_map& tensors) {
  if (!value.IsObject() || is_base64_object(value)) {
    if (inputs.size() > 1) {
      return invalid_argument(
          "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
          "tensorinfo_map");
    }
    TensorProto& tensor = tensors[inputs.begin()->first];
    tensor.set_dtype(inputs.begin()->second.dtype());
    dense_shape(value, *tensor.mutable_tensor_shape());
    int unused = 0;
    return fill_tensor_proto(value, 0, tensor.dtype(), unused, tensor);
  }
  for (const auto& [name, info] : inputs) {
    const rapidjson::Value* item = find_member(value, name);
    if (item == nullptr) return invalid_argument("Missing named input: " + name + " in 'inputs' object.");
    TensorProto& tensor = tensors[name];
    tensor.set_dtype(info.dtype());
    tensor.mutable_tensor_shape()->Clear();
    dense_shape(*item, *tensor.mutable_tensor_shape());
    int unused = 0;
    if (status s = fill_tensor_proto(*item, 0, info.dtype(), unused, tensor); !s.ok()) return s;
  }
  return {};
}

// One value of `tensor` at `offset` (json_tensor.cc, AddSingleValueAndAdvance).
status add_single_value(const TensorProto& tensor, writer_type& writer, int& offset) {
  bool ok = false;
  switch (tensor.dtype()) {
    case tensorflow::DT_FLOAT:
      ok = offset < tensor.float_val_size() && write_decimal(writer, tensor.float_val(offset));
      break;
    case tensorflow::DT_DOUBLE:
      ok = offset < tensor.double_val_size() && write_decimal(writer, tensor.double_val(offset));
      break;
    case tensorflow::DT_INT32:
    case tensorflow::DT_INT16:
    case tensorflow::DT_INT8:
    case tensorflow::DT_UINT8:
      ok = offset < tensor.int_val_size() && writer.Int(tensor.int_val(offset));
      break;
    case tensorflow::DT_INT64:
      ok = offset < tensor.int64_val_size() && writer.Int64(tensor.int64_val(offset));
      break;
    case tensorflow::DT_BOOL:
      ok = offset < tensor.bool_val_size() && writer.Bool(tensor.bool_val(offset));
      break;
    case tensorflow::DT_UINT32:
      ok = offset < tensor.uint32_val_size() && writer.Uint(tensor.uint32_val(offset));
      break;
    case tensorflow::DT_UINT64:
      ok = offset < tensor.uint64_val_size() && writer.Uint64(tensor.uint64_val(offset));
      break;
    default:
      break;
  }
  if (!ok)
    return invalid_argument(fmt::format("Failed to write JSON value for tensor type: {}", dtype_name(tensor.dtype())));
  ++offset;
  return {};
}

status add_tensor_values(const TensorProto& tensor, int dim, writer_type& writer, int& offset) {
  const auto& shape = tensor.tensor_shape();
  if (dim > shape.dim_size() - 1) return add_single_value(tensor, writer, offset);
  writer.StartArray();
  for (std::int64_t i = 0; i < shape.dim(dim).size(); ++i) {
    status s = dim == shape.dim_size() - 1 ? add_single_value(tensor, writer, offset)
                                           : add_tensor_values(tensor, dim + 1, writer, offset);
    if (!s.ok()) return s;
  }
  writer.EndArray();
  return {};
}

// Up to four outputs without the heap (a Predict answer has one or a few).
using sorted_entries = boost::container::small_vector<const tensor_map::value_type*, 4>;

sorted_entries sorted(const tensor_map& tensors) {
  sorted_entries entries;
  entries.reserve(tensors.size());
  for (const auto& entry : tensors) entries.push_back(&entry);
  std::sort(entries.begin(), entries.end(), [](auto* a, auto* b) { return a->first < b->first; });
  return entries;
}

status make_row_json(const tensor_map& tensors, std::string& json) {
  const auto entries = sorted(tensors);
  std::int64_t batch_size = 0;
  boost::container::small_vector<int, 4> offsets(entries.size(), 0);  // next value of entries[i]
  for (const auto* entry : entries) {
    const auto& [name, tensor] = *entry;
    if (tensor.tensor_shape().dim_size() == 0) {
      return invalid_argument("Tensor name: " + name + " has no shape information ");
    }
    const std::int64_t size = tensor.tensor_shape().dim(0).size();
    if (size < 1) return invalid_argument(fmt::format("Tensor name: {} has invalid batch size: {}", name, size));
    if (batch_size != 0 && batch_size != size) {
      return invalid_argument(
          fmt::format("Tensor name: {} has inconsistent batch size: {} expecting: {}", name, size, batch_size));
    }
    batch_size = size;
  }
  json_writer out(json);
  writer_type& writer = out.writer;
  writer.StartObject();
  writer.Key(predictions_key);
  writer.StartArray();
  const bool objects = tensors.size() > 1;
  for (std::int64_t item = 0; item < batch_size; ++item) {
    if (objects) writer.StartObject();
    writer.SetFormatOptions(rapidjson::kFormatSingleLineArray);
    for (std::size_t i = 0; i < entries.size(); ++i) {
      if (objects) writer.Key(entries[i]->first.c_str());
      if (status s = add_tensor_values(entries[i]->second, 1, writer, offsets[i]); !s.ok()) return s;
    }
    writer.SetFormatOptions(rapidjson::kFormatDefault);
    if (objects) writer.EndObject();
  }
  writer.EndArray();
  writer.EndObject();
  return {};
}

status make_columnar_json(const tensor_map& tensors, std::string& json) {
  json_writer out(json);
  writer_type& writer = out.writer;
  writer.StartObject();
  writer.Key(outputs_key);
  const bool objects = tensors.size() > 1;
  if (objects) writer.StartObject();
  for (const auto* entry : sorted(tensors)) {
    if (objects) writer.Key(entry->first.c_str());
    int unused = 0;
    if (status s = add_tensor_values(entry->second, 0, writer, unused); !s.ok()) return s;
  }
  if (objects) writer.EndObject();
  writer.EndObject();
  return {};
}

template <typename T>
std::string format_decimal_impl(T value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return std::signbit(value) ? "-Infinity" : "Infinity";
  // absl::StrCat(value): six significant digits, like printf's %g.
  char text[64];
  auto end = std::to_chars(text, text + sizeof text, static_cast<double>(value), std::chars_format::general, 6).ptr;
  T back{};
  std::from_chars(text, end, back);
  if (back != value) {
    end =
        std::to_chars(text, text + sizeof text, value, std::chars_format::general, std::numeric_limits<T>::max_digits10)
            .ptr;
  }
  std::string result(text, end);
  if (result.find('.') == std::string::npos && result.find('e') == std::string::npos) result += ".0";
  return result;
}

}  // namespace

std::string format_decimal(double value) { return format_decimal_impl(value); }
std::string format_decimal(float value) { return format_decimal_impl(value); }

status fill_predict_request_from_json(std::string_view json, const input_map_lookup& lookup,
                                      tensorflow::serving::PredictRequest& request, json_format& format) {
  if (json.empty()) return invalid_argument("JSON Parse error: The document is empty");
  // A small request parses without touching the heap: the DOM and the parser's stack start in
  // buffers on this stack frame (RapidJSON takes more from malloc when they are not enough).
  // The parser's first stack must fit in its buffer after the pool's chunk header
  // (MemoryPoolAllocator keeps it at the buffer's start): asking for the whole buffer made
  // every request malloc and free a 64 KiB chunk (RapidJSON's default chunk), about 1 us of
  // glibc's malloc_consolidate and _int_malloc per REST Predict in a profile (perf).
  char values_buffer[8192];
  char stack_buffer[2048];
  constexpr std::size_t stack_capacity = sizeof stack_buffer / 2;
  rapidjson::MemoryPoolAllocator<> values(values_buffer, sizeof values_buffer);
  rapidjson::MemoryPoolAllocator<> stack(stack_buffer, sizeof stack_buffer);
  rapidjson::GenericDocument<rapidjson::UTF8<>, rapidjson::MemoryPoolAllocator<>, rapidjson::MemoryPoolAllocator<>> doc(
      &values, stack_capacity, &stack);
  rapidjson::MemoryStream memory(json.data(), json.size());
  rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> stream(memory);
  if (doc.ParseStream<parse_flags>(stream).HasParseError()) {
    return invalid_argument(fmt::format("JSON Parse error: {} at offset: {}",
                                        rapidjson::GetParseError_En(doc.GetParseError()), doc.GetErrorOffset()));
  }
  if (!doc.IsObject()) return format_error(doc, "Is not object");

  if (const rapidjson::Value* name = find_member(doc, signature_key); name != nullptr) {
    if (!name->IsString()) {
      return format_error(doc, "not formatted correctly. 'signature_name' key must be a string value.");
    }
    request.mutable_model_spec()->set_signature_name(name->GetString(), name->GetStringLength());
  }
  const std::string& signature_name = request.model_spec().signature_name();
  const input_map* inputs = nullptr;
  if (status s = lookup(signature_name, inputs); !s.ok()) return s;
  if (inputs == nullptr || inputs->empty()) {
    return invalid_argument("Failed to get input map for signature: " +
                            (signature_name.empty() ? std::string("DEFAULT") : signature_name));
  }

  const rapidjson::Value* instances = find_member(doc, instances_key);
  const rapidjson::Value* columns = find_member(doc, inputs_key);
  if (instances != nullptr) {
    if (columns != nullptr) {
      return format_error(doc, "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ");
    }
    if (!instances->IsArray()) return format_error(doc, "Excepting 'instances' to be an list/array");
    if (instances->Empty()) return format_error(doc, "No values in 'instances' array");
    format = json_format::row;
    return fill_from_instances(*instances, *inputs, *request.mutable_inputs());
  }
  if (columns != nullptr) {
    format = json_format::columnar;
    return fill_from_inputs(*columns, *inputs, *request.mutable_inputs());
  }
  return invalid_argument("Missing 'inputs' or 'instances' key");
}

status make_json_from_tensors(const tensor_map& outputs, json_format format, std::string& json) {
  if (outputs.empty()) return invalid_argument("Cannot convert empty tensor map to JSON");
  return format == json_format::row ? make_row_json(outputs, json) : make_columnar_json(outputs, json);
}

std::string make_json_error(std::string_view message) {
  const std::string text = valid_utf8(message);
  std::string json;
  json_writer out(json);
  out.writer.StartObject();
  out.writer.Key("error");
  out.writer.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
  out.writer.EndObject();
  return json;
}

std::string valid_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    std::size_t len = 0;
    std::uint32_t min = 0;
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    if ((c & 0xE0) == 0xC0) {
      len = 2, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, min = 0x10000;
    }
    bool valid = len != 0 && i + len <= n;
    std::uint32_t cp = len != 0 ? c & (0x7Fu >> len) : 0;
    for (std::size_t k = 1; valid && k < len; ++k) {
      valid = (s[i + k] & 0xC0) == 0x80;
      cp = (cp << 6) | (s[i + k] & 0x3Fu);
    }
    valid = valid && cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (valid) {
      out.append(text.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

}  // namespace celsius::serving
