#pragma once

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp needs std::exchange

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "app.hpp"
#include "http_session.hpp"
#include "metrics.hpp"

namespace celsius {

// Owns the event loops: one io_context per thread, each running its own connections
// with no locks. One acceptor (on loop 0) hands new connections round-robin to the
// loops. (SO_REUSEPORT acceptors would let a second server bind the same port without
// an error and split its traffic; a single acceptor keeps "address in use" loud, and
// accepting is a tiny share of the work.)
class server {
 public:
  server(const app& application, metrics_registry& metrics);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Opens the listening socket; throws boost::system::system_error on failure.
  // Returns the bound port (useful with port 0).
  std::uint16_t listen();

  // Starts the event-loop threads; returns at once.
  void start();

  // Graceful stop, callable from any thread: stop accepting at once; for the drain window
  // (--shutdown-drain-ms, cut to `grace`) keep serving requests on open connections, each
  // answered with `Connection: close`; then close idle connections, let requests in flight
  // finish, and end the loops (early once no connection is left). Waits at most `grace`,
  // then closes what is left. Returns true when everything finished within `grace`.
  bool stop(std::chrono::milliseconds grace);

 private:
  struct worker {
    explicit worker(metrics_shard& shard) : state{shard, {}, {}, false, false, nullptr} {}
    // Declaration order is destruction order, reversed: `state` must outlive `ioc`, whose
    // destructor destroys leftover sessions (after a grace-period timeout) and they
    // unregister from `state.sessions`; `guard` and the timers must die before `ioc` (and
    // stop() clears `state.drain_timer` first, so a late session never touches a dead one).
    worker_state state;
    boost::asio::io_context ioc{1};
    std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard;
    std::optional<steady_timer> log_flush_timer;
    std::optional<steady_timer> drain_timer;
    std::thread thread;
  };
  using acceptor = boost::asio::basic_socket_acceptor<boost::asio::ip::tcp, executor>;

  task<void> accept_loop();
  void schedule_log_flush(worker& w);
  void begin_shutdown(worker& w);
  void end_drain(worker& w);

  const app& app_;
  std::vector<std::unique_ptr<worker>> workers_;
  std::unique_ptr<acceptor> acceptor_;
  std::size_t next_worker_ = 0;
  std::chrono::milliseconds drain_{0};  // set by stop() before the loops read it

  std::mutex mutex_;
  std::condition_variable finished_cv_;
  std::size_t running_ = 0;
};

}  // namespace celsius
