#pragma once

#include <memory>
#include <string>
#include <vector>

#include "server_process.hpp"

namespace celsius::test {

// The project's Python (the .venv made by scripts/python-env.sh, or $CELSIUS_PYTHON), which
// exports the SavedModel; empty when it, or the model server binary, does not exist: the
// model-path tests need both.
std::string project_python();

// celsius-model-server: $CELSIUS_MODEL_SERVER_BINARY, else the one CMake names (this build
// tree's, or the release tree's in the sanitizer builds, which cannot build it).
std::string model_server_binary();

// Skips the test when the model path cannot run (no project Python or no model server),
// unless CELSIUS_REQUIRE_MODEL_SERVER is set (scripts/test-all.sh sets it, so CI fails
// instead of skipping).
#define CELSIUS_REQUIRE_PYTHON()                                                                         \
  do {                                                                                                   \
    if (::celsius::test::project_python().empty()) {                                                     \
      if (std::getenv("CELSIUS_REQUIRE_MODEL_SERVER")) FAIL() << "no project Python or no model server"; \
      GTEST_SKIP() << "no project Python (.venv: scripts/python-env.sh) or no "                          \
                   << ::celsius::test::model_server_binary();                                            \
    }                                                                                                    \
  } while (0)

// Exports the SavedModel once per test binary (python -m celsius_model export); returns
// the model base path (holding version 1).
std::string exported_model();

// The model server (celsius-model-server, TF Serving's protocols on TensorFlow's C API) on
// free loopback ports, serving the exported model as "f2c"; port() is REST. `extra_args` are
// its flags (tensorflow_model_server's names, plus the --celsius_* test aids).
std::unique_ptr<server_process> start_model_server(std::vector<std::string> extra_args = {});
std::uint16_t grpc_port_of(const server_process& model_server);

// Distinct loopback ports with nothing listening (bound together, read, closed): for a
// model server that is down now and will start on them later.
std::vector<std::uint16_t> unused_ports(std::size_t count);
inline std::uint16_t unused_port() { return unused_ports(1).front(); }

}  // namespace celsius::test
