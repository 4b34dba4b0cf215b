#include "server.hpp"

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>

#include "json_write.hpp"
#include "logging.hpp"

namespace celsius {

namespace asio = boost::asio;
using asio::ip::tcp;

server::server(const app& application, metrics_registry& metrics) : app_(application) {
  for (unsigned i = 0; i < application.cfg().threads; ++i) {
    workers_.push_back(std::make_unique<worker>(metrics.shard(i)));
  }
}

server::~server() {
  for (auto& w : workers_) {
    w->ioc.stop();
    if (w->thread.joinable()) w->thread.join();
  }
}

std::uint16_t server::listen() {
  const config& cfg = app_.cfg();
  const tcp::endpoint endpoint(asio::ip::make_address(cfg.host), cfg.port);
  acceptor_ = std::make_unique<acceptor>(workers_.front()->ioc.get_executor());
  acceptor_->open(endpoint.protocol());
  acceptor_->set_option(tcp::acceptor::reuse_address(true));  // restart while old sockets sit in TIME_WAIT
  acceptor_->bind(endpoint);
  acceptor_->listen(asio::socket_base::max_listen_connections);
  return acceptor_->local_endpoint().port();
}

task<void> server::accept_loop() {
  for (;;) {
    worker& target = *workers_[next_worker_];
    next_worker_ = (next_worker_ + 1) % workers_.size();
    boost::system::error_code ec;
    tcp_socket socket = co_await acceptor_->async_accept(target.ioc, asio::redirect_error(use_task, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_->is_open()) co_return;
      // Out of file descriptors and similar: back off instead of spinning.
      std::string fields = R"("error":)";
      append_json_string(fields, ec.message());
      log_warn("accept failed", fields);
      steady_timer pause(acceptor_->get_executor(), std::chrono::milliseconds(50));
      co_await pause.async_wait(asio::redirect_error(use_task, ec));
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    spawn_session(target.state, app_, std::move(socket));
  }
}

void server::schedule_log_flush(worker& w) {
  w.log_flush_timer->expires_after(std::chrono::milliseconds(200));
  w.log_flush_timer->async_wait([this, &w](const boost::system::error_code& ec) {
    flush_thread_logs();
    if (!ec && !w.state.stopping) schedule_log_flush(w);
  });
}

void server::start() {
  asio::co_spawn(workers_.front()->ioc.get_executor(), accept_loop(), asio::detached);
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    worker& w = *workers_[i];
    w.guard.emplace(w.ioc.get_executor());
    w.log_flush_timer.emplace(w.ioc.get_executor());
    ++running_;
    w.thread = std::thread([this, &w, i] {
      attach_thread_logger(fmt::format("loop-{}", i));
      schedule_log_flush(w);
      w.ioc.run();
      flush_thread_logs();
      std::lock_guard done(mutex_);
      --running_;
      finished_cv_.notify_all();
    });
  }
}

void server::begin_shutdown(worker& w) {
  // Shutdown without racing the clients (issue 10, item 3): the listener closes at once,
  // but connections stay open for the drain window and every answer on them says
  // `Connection: close`, so a client that sends its next request meanwhile is answered and
  // reconnects elsewhere. Only then are connections still idle closed.
  w.state.stopping = true;
  if (&w == workers_.front().get() && acceptor_) {
    boost::system::error_code ignored;
    acceptor_->close(ignored);
  }
  w.log_flush_timer->cancel();
  w.guard.reset();  // the loop ends once its last connection has closed
  if (drain_ == std::chrono::milliseconds(0) || w.state.sessions.empty()) {
    end_drain(w);
    return;
  }
  w.drain_timer.emplace(w.ioc.get_executor());
  w.state.drain_timer = &*w.drain_timer;
  w.drain_timer->expires_after(drain_);
  // Ends early (cancelled) when the last connection closes: then there is nothing to drain.
  w.drain_timer->async_wait([this, &w](const boost::system::error_code&) { end_drain(w); });
}

void server::end_drain(worker& w) {
  w.state.drain_over = true;
  w.state.drain_timer = nullptr;
  const std::vector<http_session*> sessions(w.state.sessions.begin(), w.state.sessions.end());
  for (http_session* s : sessions) s->on_drain_over();
}

bool server::stop(std::chrono::milliseconds grace) {
  // The drain window is part of the grace period, which bounds the whole shutdown.
  drain_ = std::min(grace, std::chrono::milliseconds(app_.cfg().shutdown_drain_ms));
  for (auto& w : workers_) asio::post(w->ioc, [this, raw = w.get()] { begin_shutdown(*raw); });
  bool drained = false;
  {
    std::unique_lock lock(mutex_);
    drained = finished_cv_.wait_for(lock, grace, [this] { return running_ == 0; });
  }
  if (!drained) {
    log_warn("shutdown grace period expired; closing the remaining connections",
             fmt::format(R"("grace_ms":{})", grace.count()));
    for (auto& w : workers_) w->ioc.stop();
  }
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
    w->state.drain_timer = nullptr;  // sessions left after a forced stop die with the io_context
  }
  return drained;
}

}  // namespace celsius
