#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "status.hpp"
#include "tensorflow_serving.pb.h"

namespace celsius::serving {

// TF Serving's REST JSON for tensors, after its util/json_tensor.cc (the same RapidJSON
// calls, so the same texts and the same error messages):
//   request  {"signature_name": ..., "instances": [...]}  (row form) or {"inputs": ...}
//            (columnar form); NaN, Infinity and -Infinity are accepted as numbers; numbers
//            are read with full precision (every double's shortest or 17-digit text reads
//            back bit for bit);
//   response {"predictions": [...]} or {"outputs": ...}, pretty-printed, floating point
//            values with 6 significant digits when that reads back exactly, else 17 (float:
//            9), ".0" on whole numbers, bare NaN/Infinity/-Infinity tokens.

enum class json_format { row, columnar };

using input_map = google::protobuf::Map<std::string, tensorflow::TensorInfo>;

// Looks up a signature's inputs by name ("" = the default signature); fails with
// NOT_FOUND/INVALID_ARGUMENT like TF Serving's HttpRestApiHandler::GetInfoMap.
using input_map_lookup = std::function<status(const std::string& signature_name, const input_map*& inputs)>;

// Fills request.model_spec().signature_name and request.inputs from a JSON body.
status fill_predict_request_from_json(std::string_view json, const input_map_lookup& lookup,
                                      tensorflow::serving::PredictRequest& request, json_format& format);

// The JSON answer for Predict outputs (row form: "predictions", columnar: "outputs"; with
// one output its name is left out). Output names are written in sorted order. `json` is
// replaced; after an error it may hold part of an answer.
status make_json_from_tensors(const google::protobuf::Map<std::string, tensorflow::TensorProto>& outputs,
                              json_format format, std::string& json);

// {"error": "<message>"}, pretty-printed like TF Serving's MakeJsonFromStatus; bytes of
// the message that are not valid UTF-8 become U+FFFD, so the answer is always valid JSON.
std::string make_json_error(std::string_view message);

// TF Serving's number formatting (json_tensor.cc, WriteDecimal).
std::string format_decimal(double value);
std::string format_decimal(float value);

// `text` with every invalid UTF-8 sequence replaced by U+FFFD.
std::string valid_utf8(std::string_view text);

}  // namespace celsius::serving
