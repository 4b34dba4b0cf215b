#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace celsius {

// Logs are JSON lines on stdout: {"ts":...,"level":...,"msg":...,<fields>}, formatted by
// spdlog. Each event-loop thread has its own logger whose sink appends lines to a
// thread-local batch; full batches (and, every 200 ms, partial ones) go to one writer
// thread that does the write(2) calls. The event loop never waits on stdout and pays no
// cross-thread wake-up per line. If stdout cannot keep up, whole batches are dropped and
// counted (celsius_log_messages_dropped_total) rather than blocking requests.
void init_logging(std::string_view level);
void shutdown_logging();  // flushes everything and stops the writer thread
void flush_logs();        // this thread's batch and the shared logger, handed to the writer
std::uint64_t log_messages_dropped();

// Gives the calling thread its own batching logger (call once per event-loop thread).
void attach_thread_logger(std::string_view name);
// Hands this thread's partial batch to the writer (the loops call it on a timer).
void flush_thread_logs();

bool request_logging_enabled() noexcept;  // level <= info

struct request_log {
  std::string_view method;
  std::string_view target;
  unsigned status;
  std::chrono::nanoseconds duration;
  std::size_t bytes_in;
  std::size_t bytes_out;
  std::string_view request_id;
};
void log_request(const request_log& entry);

// A one-off event: `fields` is a JSON fragment of extra members ("\"port\":8000"), may be empty.
void log_info(std::string_view msg, std::string_view fields = {});
void log_warn(std::string_view msg, std::string_view fields = {});
void log_error(std::string_view msg, std::string_view fields = {});

}  // namespace celsius
