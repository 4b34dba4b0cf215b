#include "model_server.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace celsius::test {

namespace fs = std::filesystem;

std::string model_server_binary() {
  if (const char* p = std::getenv("CELSIUS_MODEL_SERVER_BINARY"); p != nullptr && *p != '\0') return p;
  return CELSIUS_MODEL_SERVER_BINARY;
}

std::string project_python() {
  if (!fs::exists(model_server_binary())) return {};
  if (const char* p = std::getenv("CELSIUS_PYTHON")) return p;
  const fs::path venv = fs::path(CELSIUS_REPO_ROOT) / ".venv" / "bin" / "python";
  return fs::exists(venv) ? venv.string() : std::string();
}

namespace {
std::string python_path_env() { return "PYTHONPATH=" + (fs::path(CELSIUS_REPO_ROOT) / "model" / "src").string(); }

struct exported {
  exported() {
    char pattern[] = "/tmp/celsius-model-XXXXXX";
    if (mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir = pattern;
    base = (fs::path(dir) / "f2c").string();
    const std::string command = python_path_env() + " TF_CPP_MIN_LOG_LEVEL=2 '" + project_python() +
                                "' -m celsius_model export --output '" + base + "' >/dev/null";
    if (std::system(command.c_str()) != 0) throw std::runtime_error("model export failed: " + command);
  }
  ~exported() {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }
  std::string dir, base;
};
}  // namespace

std::string exported_model() {
  static const exported model;
  return model.base;
}

std::unique_ptr<server_process> start_model_server(std::vector<std::string> extra_args) {
  std::vector<std::string> argv{model_server_binary(), "--port", "0", "--rest_api_port", "0"};
  argv.insert(argv.end(), {"--celsius_free_ports", "--celsius_bind_address", "127.0.0.1"});
  argv.insert(argv.end(), {"--model_name", "f2c", "--model_base_path", exported_model()});
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  return std::make_unique<server_process>(server_process::launch{
      std::move(argv), R"(Exporting HTTP/REST API at:localhost:(\d+))", {"TF_CPP_MIN_LOG_LEVEL=2"}});
}

std::uint16_t grpc_port_of(const server_process& model_server) {
  const auto port = model_server.find_in_log(R"(Running gRPC ModelServer at [\d.]+:(\d+))");
  if (!port) throw std::runtime_error("model server did not log its gRPC port");
  return static_cast<std::uint16_t>(std::stoi(*port));
}

std::vector<std::uint16_t> unused_ports(std::size_t count) {
  std::vector<int> sockets;
  std::vector<std::uint16_t> ports;
  for (std::size_t i = 0; i < count; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockets.push_back(fd);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      ports.push_back(ntohs(addr.sin_port));
    }
  }
  for (const int fd : sockets) ::close(fd);  // all held open until now, so the ports differ
  if (ports.size() != count) throw std::runtime_error("cannot find unused ports");
  return ports;
}

}  // namespace celsius::test
