#include "loop_post.hpp"

#include <boost/asio/post.hpp>

namespace celsius {

namespace {
thread_local batched_posts* active_batch = nullptr;  // the outermost batch on this thread
}  // namespace

batched_posts::batched_posts() noexcept : outermost_(active_batch == nullptr) {
  if (outermost_) active_batch = this;
}

batched_posts::~batched_posts() {
  if (!outermost_) return;
  active_batch = nullptr;
  for (auto& [loop, handlers] : loops_) {
    boost::asio::post(loop, [handlers = std::move(handlers)]() {
      for (const auto& handler : handlers) handler();
    });
  }
}

void post_to_loop(const loop_executor& loop, std::function<void()> fn) {
  batched_posts* batch = active_batch;
  if (batch == nullptr) {
    boost::asio::post(loop, std::move(fn));
    return;
  }
  for (auto& [queued_loop, handlers] : batch->loops_) {
    if (queued_loop == loop) {
      handlers.push_back(std::move(fn));
      return;
    }
  }
  batch->loops_.emplace_back(loop, std::vector<std::function<void()>>{}).second.push_back(std::move(fn));
}

}  // namespace celsius
