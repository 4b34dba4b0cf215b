#pragma once

#include <memory>
#include <string>
#include <vector>

#include "server_process.hpp"

namespace celsius::test {

// The project's Python (the .venv made by scripts/python-env.sh, or $CELSIUS_PYTHON);
// empty when it does not exist.
std::string project_python();

// Skips the test when there is no project Python, unless CELSIUS_REQUIRE_MODEL_SERVER is
// set (scripts/test-all.sh sets it, so CI fails instead of skipping).
#define CELSIUS_REQUIRE_PYTHON()                                                      \
  do {                                                                                \
    if (::celsius::test::project_python().empty()) {                                  \
      if (std::getenv("CELSIUS_REQUIRE_MODEL_SERVER")) FAIL() << "no project Python"; \
      GTEST_SKIP() << "no project Python (.venv): run scripts/python-env.sh";         \
    }                                                                                 \
  } while (0)

// Exports the SavedModel once per test binary (python -m celsius_model export); returns
// the model base path (holding version 1).
std::string exported_model();

// The local model server (python -m celsius_model serve) on free ports; port() is REST.
std::unique_ptr<server_process> start_model_server(std::vector<std::string> extra_args = {});
std::uint16_t grpc_port_of(const server_process& model_server);

// Distinct loopback ports with nothing listening (bound together, read, closed): for a
// model server that is down now and will start on them later.
std::vector<std::uint16_t> unused_ports(std::size_t count);
inline std::uint16_t unused_port() { return unused_ports(1).front(); }

}  // namespace celsius::test
