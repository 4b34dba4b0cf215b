// libFuzzer entry point (preset "fuzz", clang): raw bytes as an HTTP request, and the
// same bytes as a /convert body. Any violated invariant aborts with its description.
#include <cstdio>
#include <cstdlib>

#include "request_harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (const std::string& problem : {celsius::fuzz::check_request(bytes), celsius::fuzz::check_convert_body(bytes)}) {
    if (!problem.empty()) {
      std::fprintf(stderr, "invariant violated: %s\n", problem.c_str());
      std::abort();
    }
  }
  return 0;
}
