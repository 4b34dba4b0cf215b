#include "logging.hpp"

#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "json_write.hpp"

namespace celsius {

namespace {

constexpr std::size_t batch_bytes = std::size_t{32} * 1024;
constexpr std::size_t max_queued_batches = 256;  // 8 MiB of log lines waiting for stdout

struct batch {
  std::string text;
  std::size_t lines = 0;
};

// The one thread that writes to stdout.
class log_writer {
 public:
  log_writer() : thread_([this] { loop(); }) {}
  ~log_writer() { stop(); }

  void submit(batch&& b) {
    if (b.text.empty()) return;
    {
      std::lock_guard lock(mutex_);
      if (queue_.size() >= max_queued_batches) {
        dropped_.fetch_add(b.lines, std::memory_order_relaxed);
        return;
      }
      queue_.push_back(std::move(b));
    }
    cv_.notify_one();
  }

  // Blocks until everything submitted so far is written.
  void drain() {
    std::unique_lock lock(mutex_);
    idle_cv_.wait(lock, [this] { return queue_.empty() && !writing_; });
  }

  void stop() {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  void loop() {
    std::unique_lock lock(mutex_);
    for (;;) {
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) return;
      batch b = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      lock.unlock();
      write_all(b.text);
      lock.lock();
      writing_ = false;
      if (queue_.empty()) idle_cv_.notify_all();
    }
  }

  static void write_all(std::string_view text) {
    while (!text.empty()) {
      const ssize_t n = ::write(STDOUT_FILENO, text.data(), text.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // stdout closed: nothing sensible to do
      text.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::deque<batch> queue_;
  bool stopping_ = false;
  bool writing_ = false;
  std::atomic<std::uint64_t> dropped_{0};
  std::thread thread_;
};

std::unique_ptr<log_writer>& writer() {
  static std::unique_ptr<log_writer> instance;
  return instance;
}

// Collects formatted lines into a batch and hands it to the writer when full or flushed.
template <typename Mutex>
class batching_sink final : public spdlog::sinks::base_sink<Mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    this->formatter_->format(msg, line);
    batch_.text.append(line.data(), line.size());
    ++batch_.lines;
    if (batch_.text.size() >= batch_bytes) flush_();
  }
  void flush_() override {
    if (batch_.text.empty()) return;
    if (auto& w = writer()) w->submit(std::move(batch_));
    batch_ = batch{};
    batch_.text.reserve(batch_bytes + 1024);
  }

 private:
  batch batch_;
};

constexpr std::string_view pattern = R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l",%v})";
spdlog::level::level_enum configured_level = spdlog::level::info;

std::shared_ptr<spdlog::logger>& shared_logger() {
  static std::shared_ptr<spdlog::logger> instance;
  return instance;
}

thread_local std::shared_ptr<spdlog::logger> thread_logger;

spdlog::logger* current_logger() {
  if (thread_logger) return thread_logger.get();
  return shared_logger().get();
}

void log_event(spdlog::level::level_enum level, std::string_view msg, std::string_view fields) {
  spdlog::logger* log = current_logger();
  if (log == nullptr || !log->should_log(level)) return;
  std::string line;
  line.reserve(32 + msg.size() + fields.size());
  line += "\"msg\":";
  append_json_string(line, msg);
  if (!fields.empty()) {
    line += ',';
    line += fields;
  }
  log->log(level, std::string_view(line));  // every logger flushes on warn and above (flush_on)
}

spdlog::level::level_enum parse_level(std::string_view level) {
  if (level == "warn") return spdlog::level::warn;
  return spdlog::level::from_str(std::string(level));
}

}  // namespace

void init_logging(std::string_view level) {
  configured_level = parse_level(level);
  writer() = std::make_unique<log_writer>();
  // Lines from threads without their own logger (main, startup, shutdown) are rare and
  // handed over one by one.
  auto log = std::make_shared<spdlog::logger>("celsius", std::make_shared<batching_sink<std::mutex>>());
  log->set_pattern(std::string(pattern), spdlog::pattern_time_type::utc);
  log->set_level(configured_level);
  log->flush_on(spdlog::level::trace);
  shared_logger() = std::move(log);
}

void attach_thread_logger(std::string_view name) {
  auto log = std::make_shared<spdlog::logger>(std::string(name),
                                              std::make_shared<batching_sink<spdlog::details::null_mutex>>());
  log->set_pattern(std::string(pattern), spdlog::pattern_time_type::utc);
  log->set_level(configured_level);
  log->flush_on(spdlog::level::warn);
  thread_logger = std::move(log);
}

void flush_thread_logs() {
  if (thread_logger) thread_logger->flush();
}

void flush_logs() {
  flush_thread_logs();
  if (auto& log = shared_logger()) log->flush();
  if (auto& w = writer()) w->drain();
}

void shutdown_logging() {
  flush_logs();
  thread_logger.reset();
  shared_logger().reset();
  if (auto& w = writer()) w->stop();
  writer().reset();
}

std::uint64_t log_messages_dropped() {
  const auto& w = writer();
  return w ? w->dropped() : 0;
}

bool request_logging_enabled() noexcept { return configured_level <= spdlog::level::info; }

void log_request(const request_log& e) {
  spdlog::logger* log = current_logger();
  if (log == nullptr) return;
  std::string line;
  line.reserve(200 + e.target.size());
  line += R"("msg":"request","method":)";
  append_json_string(line, e.method);
  line += R"(,"path":)";
  append_json_string(line, e.target.substr(0, 512));
  fmt::format_to(std::back_inserter(line),
                 R"(,"status":{},"duration_us":{},"bytes_in":{},"bytes_out":{},"request_id":")", e.status,
                 std::chrono::duration_cast<std::chrono::microseconds>(e.duration).count(), e.bytes_in, e.bytes_out);
  line += e.request_id;  // validated or generated: a safe token
  line += '"';
  log->log(spdlog::level::info, std::string_view(line));
}

void log_info(std::string_view msg, std::string_view fields) { log_event(spdlog::level::info, msg, fields); }
void log_warn(std::string_view msg, std::string_view fields) { log_event(spdlog::level::warn, msg, fields); }
void log_error(std::string_view msg, std::string_view fields) { log_event(spdlog::level::err, msg, fields); }

}  // namespace celsius
