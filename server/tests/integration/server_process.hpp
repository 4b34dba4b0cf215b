#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace celsius::test {

// The real celsius-server binary in a child process, on a free port (--port 0 unless
// the arguments say otherwise). Its stdout (JSON log lines) is read continuously so a
// full pipe can never stall it; tests can inspect the lines.
class server_process {
 public:
  // Any program: `argv`, ready once a log line matches `ready_pattern`, whose first
  // capture group is the port.
  struct launch {
    std::vector<std::string> argv;
    std::string ready_pattern;
    std::vector<std::string> env;  // extra NAME=value entries
  };
  explicit server_process(launch how);
  // celsius-server with `args` (on 127.0.0.1 and port 0 unless they say otherwise).
  explicit server_process(std::vector<std::string> args = {});
  ~server_process();  // SIGKILL if still running
  server_process(const server_process&) = delete;
  server_process& operator=(const server_process&) = delete;

  std::uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }

  void signal(int sig) const;
  // Waits for the process to exit; the exit code, or nullopt on timeout (or death by signal: -signal).
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  // SIGTERM, then wait_exit.
  std::optional<int> stop(std::chrono::milliseconds timeout = std::chrono::seconds(15));

  std::vector<std::string> log_lines() const;
  // The first capture group of the first log line matching `pattern`, if any.
  std::optional<std::string> find_in_log(const std::string& pattern) const;
  // Waits until a log line containing `needle` appears.
  bool wait_for_log(const std::string& needle, std::chrono::milliseconds timeout) const;

 private:
  void read_output(int fd);

  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
  std::thread reader_;
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  std::vector<std::string> lines_;
  bool eof_ = false;
  std::optional<int> exit_code_;
};

}  // namespace celsius::test
