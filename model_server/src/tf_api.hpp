#pragma once

// TensorFlow's C API, called through function pointers into the two shared libraries of the
// tensorflow-cpu wheel (libtensorflow_framework.so.2, libtensorflow_cc.so.2), opened with
// dlopen(RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND).
//
// Why not link them: both export their own copies of protobuf and abseil (thousands of
// symbols), and this program links Debian's protobuf, abseil and gRPC. Linked together, one
// process would hold two versions of those libraries and calls would cross between them.
// RTLD_LOCAL keeps TensorFlow's symbols out of the global scope, RTLD_DEEPBIND makes
// TensorFlow bind to its own copies first; the program only ever calls the C API.
// (shared/ENVIRONMENT.md; RTLD_DEEPBIND does not work under AddressSanitizer, so the
// sanitizer builds do not build this part: README, "Sanitizers".)
//
// Only tf_api.cpp and saved_model.cpp include this header (it needs TensorFlow's C headers,
// taken with -idirafter so Debian's protobuf/abseil headers win).

#include <tensorflow/c/c_api.h>

#include <memory>
#include <string>
#include <vector>

namespace celsius::serving {

struct tf_api {
  // Tensors, buffers, statuses (libtensorflow_framework.so.2).
  decltype(&::TF_NewStatus) NewStatus = nullptr;
  decltype(&::TF_DeleteStatus) DeleteStatus = nullptr;
  decltype(&::TF_GetCode) GetCode = nullptr;
  decltype(&::TF_Message) Message = nullptr;
  decltype(&::TF_NewBuffer) NewBuffer = nullptr;
  decltype(&::TF_NewBufferFromString) NewBufferFromString = nullptr;
  decltype(&::TF_DeleteBuffer) DeleteBuffer = nullptr;
  decltype(&::TF_AllocateTensor) AllocateTensor = nullptr;
  decltype(&::TF_DeleteTensor) DeleteTensor = nullptr;
  decltype(&::TF_TensorType) TensorType = nullptr;
  decltype(&::TF_NumDims) NumDims = nullptr;
  decltype(&::TF_Dim) Dim = nullptr;
  decltype(&::TF_TensorByteSize) TensorByteSize = nullptr;
  decltype(&::TF_TensorData) TensorData = nullptr;
  // Graphs and sessions (libtensorflow_cc.so.2).
  decltype(&::TF_Version) Version = nullptr;
  decltype(&::TF_NewGraph) NewGraph = nullptr;
  decltype(&::TF_DeleteGraph) DeleteGraph = nullptr;
  decltype(&::TF_GraphOperationByName) GraphOperationByName = nullptr;
  decltype(&::TF_OperationNumOutputs) OperationNumOutputs = nullptr;
  decltype(&::TF_NewSessionOptions) NewSessionOptions = nullptr;
  decltype(&::TF_SetConfig) SetConfig = nullptr;
  decltype(&::TF_DeleteSessionOptions) DeleteSessionOptions = nullptr;
  decltype(&::TF_LoadSessionFromSavedModel) LoadSessionFromSavedModel = nullptr;
  decltype(&::TF_SessionRun) SessionRun = nullptr;
  decltype(&::TF_CloseSession) CloseSession = nullptr;
  decltype(&::TF_DeleteSession) DeleteSession = nullptr;
};

// The loaded libraries; one per process, never unloaded (TensorFlow keeps global state).
class tf_library {
 public:
  // Opens the two libraries from the first of `dirs` that holds both (an empty entry: the
  // dynamic loader's own search: LD_LIBRARY_PATH, ld.so.cache). Null and `error` set when
  // none works.
  static std::unique_ptr<tf_library> open(const std::vector<std::string>& dirs, std::string& error);

  const tf_api& api() const { return api_; }
  std::string version() const { return api_.Version(); }
  const std::string& directory() const { return directory_; }

 private:
  tf_api api_;
  std::string directory_;
};

// An owned TF_Status.
struct tf_status_deleter {
  const tf_api* api;
  void operator()(TF_Status* s) const { api->DeleteStatus(s); }
};
using tf_status_ptr = std::unique_ptr<TF_Status, tf_status_deleter>;
inline tf_status_ptr make_status(const tf_api& api) { return {api.NewStatus(), {&api}}; }

}  // namespace celsius::serving
