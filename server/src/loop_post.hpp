#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <utility>
#include <vector>

namespace celsius {

using loop_executor = boost::asio::io_context::executor_type;

// Posts `fn` to an event loop from any thread. While a `batched_posts` is alive on the
// calling thread, `fn` is queued instead, and that batch posts it later together with the
// other handlers queued for the same loop.
void post_to_loop(const loop_executor& loop, std::function<void()> fn);

// One asio::post per event loop for a batch of completions, rather than one per completion.
// A merged Predict call answers 10-30 requests at once on the model client's thread
// (request_coalescer::complete). Posted one by one, the first post woke the request's event
// loop, which shares the service's core with that thread, preempted it, ran one handler,
// found nothing else queued and went back to sleep, and so on for each member: measured
// over gRPC with coalescing, 3-4 preemptions of the client thread and about 3 sleeps of the
// event loop per merged call (voluntary and nonvoluntary context switches in
// /proc/PID/task/TID/status). Batched, the loop wakes once and runs every member's
// handler in order. Nesting is allowed: the outermost batch posts.
class batched_posts {
 public:
  batched_posts() noexcept;
  ~batched_posts();  // posts what was queued, one handler per loop, in queueing order
  batched_posts(const batched_posts&) = delete;
  batched_posts& operator=(const batched_posts&) = delete;

 private:
  friend void post_to_loop(const loop_executor& loop, std::function<void()> fn);
  std::vector<std::pair<loop_executor, std::vector<std::function<void()>>>> loops_;
  bool outermost_;
};

}  // namespace celsius
