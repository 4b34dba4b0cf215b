#include "server_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <regex>
#include <stdexcept>

extern char** environ;

namespace celsius::test {

namespace {
server_process::launch celsius_launch(std::vector<std::string> args) {
  bool has_port = false, has_host = false;
  for (const auto& a : args) {
    has_port = has_port || a == "--port";
    has_host = has_host || a == "--host";
  }
  std::vector<std::string> argv{CELSIUS_SERVER_BINARY};
  if (!has_port) argv.insert(argv.end(), {"--port", "0"});
  if (!has_host) argv.insert(argv.end(), {"--host", "127.0.0.1"});
  argv.insert(argv.end(), args.begin(), args.end());
  return {std::move(argv), R"re("msg":"listening".*"port":(\d+))re", {}};
}
}  // namespace

server_process::server_process(std::vector<std::string> args) : server_process(celsius_launch(std::move(args))) {}

server_process::server_process(launch how) {
  std::vector<std::string>& argv_storage = how.argv;
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
  env_storage.insert(env_storage.end(), how.env.begin(), how.env.end());
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
  const int rc = posix_spawnp(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  if (rc != 0) {
    close(pipe_fds[0]);
    throw std::runtime_error("cannot start " + argv_storage[0]);
  }
  reader_ = std::thread([this, fd = pipe_fds[0]] { read_output(fd); });

  const std::regex port_re(how.ready_pattern);
  std::unique_lock lock(mutex_);
  const bool started = cv_.wait_for(lock, std::chrono::seconds(120), [&] {
    for (const auto& line : lines_) {
      std::smatch m;
      if (std::regex_search(line, m, port_re)) {
        port_ = static_cast<std::uint16_t>(std::stoi(m[1]));
        return true;
      }
    }
    return eof_;
  });
  if (!started || port_ == 0) {
    std::string output;
    for (const auto& line : lines_) output += line + "\n";
    lock.unlock();
    ::kill(pid_, SIGKILL);
    wait_exit(std::chrono::seconds(5));
    if (reader_.joinable()) reader_.join();  // a constructor that throws runs no destructor
    throw std::runtime_error("server did not start; output:\n" + output);
  }
}

server_process::~server_process() {
  if (!exit_code_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    wait_exit(std::chrono::seconds(5));
  }
  if (reader_.joinable()) reader_.join();
}

void server_process::signal(int sig) const { ::kill(pid_, sig); }

std::optional<int> server_process::wait_exit(std::chrono::milliseconds timeout) {
  if (exit_code_) return exit_code_;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
      return exit_code_;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::optional<int> server_process::stop(std::chrono::milliseconds timeout) {
  signal(SIGTERM);
  return wait_exit(timeout);
}

void server_process::read_output(int fd) {
  std::string pending;
  char buf[65536];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(buf, static_cast<std::size_t>(n));
    std::size_t start = 0, nl;
    std::lock_guard lock(mutex_);
    while ((nl = pending.find('\n', start)) != std::string::npos) {
      lines_.push_back(pending.substr(start, nl - start));
      start = nl + 1;
    }
    pending.erase(0, start);
    cv_.notify_all();
  }
  close(fd);
  std::lock_guard lock(mutex_);
  if (!pending.empty()) lines_.push_back(pending);
  eof_ = true;
  cv_.notify_all();
}

std::optional<std::string> server_process::find_in_log(const std::string& pattern) const {
  const std::regex re(pattern);
  std::lock_guard lock(mutex_);
  for (const auto& line : lines_) {
    std::smatch m;
    if (std::regex_search(line, m, re)) return m[1];
  }
  return std::nullopt;
}

std::vector<std::string> server_process::log_lines() const {
  std::lock_guard lock(mutex_);
  return lines_;
}

bool server_process::wait_for_log(const std::string& needle, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] {
    for (const auto& line : lines_) {
      if (line.find(needle) != std::string::npos) return true;
    }
    return eof_;
  }) && [&] {
    for (const auto& line : lines_) {
      if (line.find(needle) != std::string::npos) return true;
    }
    return false;
  }();
}

}  // namespace celsius::test
