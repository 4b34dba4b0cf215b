#include "tf_api.hpp"

#include <dlfcn.h>

namespace celsius::serving {

namespace {

template <typename F>
bool bind(void* handle, const char* name, F& fn, std::string& error) {
  void* symbol = dlsym(handle, name);
  if (symbol == nullptr) {
    error = std::string("symbol ") + name + " not found in TensorFlow's libraries";
    return false;
  }
  fn = reinterpret_cast<F>(symbol);  // NOLINT: dlsym's documented use
  return true;
}

std::string in_dir(const std::string& dir, const char* file) { return dir.empty() ? file : dir + "/" + file; }

}  // namespace

std::unique_ptr<tf_library> tf_library::open(const std::vector<std::string>& dirs, std::string& error) {
  constexpr int flags = RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;
  std::string tried;
  for (const std::string& dir : dirs) {
    // The framework first: libtensorflow_cc.so.2 needs it, and finds it already loaded.
    void* framework = dlopen(in_dir(dir, "libtensorflow_framework.so.2").c_str(), flags);
    if (framework == nullptr) {
      tried += std::string("\n  ") + dlerror();  // NOLINT(concurrency-mt-unsafe): glibc keeps it per thread
      continue;
    }
    void* cc = dlopen(in_dir(dir, "libtensorflow_cc.so.2").c_str(), flags);
    if (cc == nullptr) {
      tried += std::string("\n  ") + dlerror();  // NOLINT(concurrency-mt-unsafe): glibc keeps it per thread
      dlclose(framework);
      continue;
    }
    auto lib = std::make_unique<tf_library>();
    lib->directory_ = dir.empty() ? "(the dynamic loader's search path)" : dir;
    tf_api& a = lib->api_;
    // dlsym on the cc handle also searches its dependency, the framework library.
    const bool ok =
        bind(cc, "TF_NewStatus", a.NewStatus, error) && bind(cc, "TF_DeleteStatus", a.DeleteStatus, error) &&
        bind(cc, "TF_GetCode", a.GetCode, error) && bind(cc, "TF_Message", a.Message, error) &&
        bind(cc, "TF_NewBuffer", a.NewBuffer, error) &&
        bind(cc, "TF_NewBufferFromString", a.NewBufferFromString, error) &&
        bind(cc, "TF_DeleteBuffer", a.DeleteBuffer, error) && bind(cc, "TF_AllocateTensor", a.AllocateTensor, error) &&
        bind(cc, "TF_DeleteTensor", a.DeleteTensor, error) && bind(cc, "TF_TensorType", a.TensorType, error) &&
        bind(cc, "TF_NumDims", a.NumDims, error) && bind(cc, "TF_Dim", a.Dim, error) &&
        bind(cc, "TF_TensorByteSize", a.TensorByteSize, error) && bind(cc, "TF_TensorData", a.TensorData, error) &&
        bind(cc, "TF_Version", a.Version, error) && bind(cc, "TF_NewGraph", a.NewGraph, error) &&
        bind(cc, "TF_DeleteGraph", a.DeleteGraph, error) &&
        bind(cc, "TF_GraphOperationByName", a.GraphOperationByName, error) &&
        bind(cc, "TF_OperationNumOutputs", a.OperationNumOutputs, error) &&
        bind(cc, "TF_NewSessionOptions", a.NewSessionOptions, error) && bind(cc, "TF_SetConfig", a.SetConfig, error) &&
        bind(cc, "TF_DeleteSessionOptions", a.DeleteSessionOptions, error) &&
        bind(cc, "TF_LoadSessionFromSavedModel", a.LoadSessionFromSavedModel, error) &&
        bind(cc, "TF_SessionRun", a.SessionRun, error) && bind(cc, "TF_CloseSession", a.CloseSession, error) &&
        bind(cc, "TF_DeleteSession", a.DeleteSession, error);
    if (!ok) return nullptr;  // the libraries stay loaded: TensorFlow cannot be unloaded safely
    return lib;
  }
  error = "cannot load TensorFlow's C API (libtensorflow_framework.so.2, libtensorflow_cc.so.2):" + tried;
  return nullptr;
}

}  // namespace celsius::serving
