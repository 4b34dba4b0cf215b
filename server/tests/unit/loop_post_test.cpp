#include "loop_post.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <string>
#include <thread>

namespace {

using namespace celsius;

// io_context::poll_one runs exactly one posted handler, so the number of poll_one calls
// that run something is the number of posts the loop received.
std::size_t posts_received(boost::asio::io_context& loop) {
  std::size_t posts = 0;
  while (loop.poll_one() != 0) ++posts;
  loop.restart();
  return posts;
}

TEST(loop_post, without_a_batch_each_handler_is_its_own_post) {
  boost::asio::io_context loop;
  std::string ran;
  for (const char c : std::string("abc")) post_to_loop(loop.get_executor(), [&ran, c] { ran += c; });
  EXPECT_EQ(ran, "") << "ran before the loop did";
  EXPECT_EQ(posts_received(loop), 3U);
  EXPECT_EQ(ran, "abc");
}

TEST(loop_post, a_batch_posts_once_per_loop_when_it_ends_in_queueing_order) {
  boost::asio::io_context first;
  boost::asio::io_context second;
  std::string ran_first;
  std::string ran_second;
  {
    const batched_posts batch;
    post_to_loop(first.get_executor(), [&] { ran_first += 'a'; });
    post_to_loop(second.get_executor(), [&] { ran_second += 'x'; });
    post_to_loop(first.get_executor(), [&] { ran_first += 'b'; });
    post_to_loop(second.get_executor(), [&] { ran_second += 'y'; });
    post_to_loop(first.get_executor(), [&] { ran_first += 'c'; });
    EXPECT_EQ(posts_received(first), 0U) << "posted before the batch ended";
    EXPECT_EQ(posts_received(second), 0U) << "posted before the batch ended";
  }
  EXPECT_EQ(posts_received(first), 1U);
  EXPECT_EQ(posts_received(second), 1U);
  EXPECT_EQ(ran_first, "abc");
  EXPECT_EQ(ran_second, "xy");
}

TEST(loop_post, a_nested_batch_leaves_the_posting_to_the_outermost) {
  boost::asio::io_context loop;
  std::string ran;
  {
    const batched_posts outer;
    post_to_loop(loop.get_executor(), [&] { ran += '1'; });
    {
      const batched_posts inner;
      post_to_loop(loop.get_executor(), [&] { ran += '2'; });
    }
    EXPECT_EQ(posts_received(loop), 0U) << "the inner batch posted";
    post_to_loop(loop.get_executor(), [&] { ran += '3'; });
  }
  EXPECT_EQ(posts_received(loop), 1U);
  EXPECT_EQ(ran, "123");
  post_to_loop(loop.get_executor(), [&] { ran += '4'; });  // the batch is over: posted at once
  EXPECT_EQ(posts_received(loop), 1U);
  EXPECT_EQ(ran, "1234");
}

TEST(loop_post, a_batch_collects_only_its_own_threads_handlers) {
  boost::asio::io_context loop;
  std::string ran;
  const batched_posts batch;
  std::thread other([&] { post_to_loop(loop.get_executor(), [&] { ran += 'o'; }); });
  other.join();
  EXPECT_EQ(posts_received(loop), 1U) << "another thread's handler waited for this thread's batch";
  EXPECT_EQ(ran, "o");
}

}  // namespace
