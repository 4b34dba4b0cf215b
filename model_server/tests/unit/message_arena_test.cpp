// message_arena_pool (message_arena.hpp): arenas come back reset, to the thread that released
// them, most recent first, at most `kept` per thread. Each test runs in a thread of its own, so
// its pool starts empty.
#include "message_arena.hpp"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "tensorflow_serving.pb.h"

namespace celsius::serving {
namespace {

template <typename F>
void in_new_thread(F f) {
  std::thread(f).join();
}

TEST(message_arena_pool, keeps_released_arenas_per_thread_most_recent_first_up_to_kept) {
  in_new_thread([] {
    ASSERT_EQ(message_arena_pool::pooled(), 0u);
    auto a = message_arena_pool::acquire();
    auto b = message_arena_pool::acquire();
    message_arena* const first = a.get();
    message_arena* const second = b.get();
    b.reset();
    a.reset();
    EXPECT_EQ(message_arena_pool::pooled(), 2u);
    auto again = message_arena_pool::acquire();
    EXPECT_EQ(again.get(), first);  // released last
    EXPECT_EQ(message_arena_pool::acquire().get(), second);
    EXPECT_EQ(message_arena_pool::pooled(), 1u);  // `second` came back when its handle ended

    in_new_thread([] { EXPECT_EQ(message_arena_pool::pooled(), 0u); });  // another thread's pool

    std::vector<message_arena_pool::handle> many;
    for (std::size_t i = 0; i < message_arena_pool::kept + 5; ++i) many.push_back(message_arena_pool::acquire());
    many.clear();
    EXPECT_EQ(message_arena_pool::pooled(), message_arena_pool::kept);  // the rest were deleted
  });
}

TEST(message_arena_pool, a_reused_arena_is_reset_and_holds_new_messages_in_its_first_block) {
  in_new_thread([] {
    message_arena* used = nullptr;
    {
      auto a = message_arena_pool::acquire();
      used = a.get();
      auto* request = google::protobuf::Arena::CreateMessage<tensorflow::serving::PredictRequest>(&a->arena);
      request->mutable_model_spec()->set_name("a name longer than the short string buffer");
      // 80 KB of values: past the first 4 KiB block, the arena takes blocks from malloc
      for (int i = 0; i < 10000; ++i) (*request->mutable_inputs())["x"].add_double_val(i);
      EXPECT_GT(a->arena.SpaceAllocated(), 80000u);
    }
    auto a = message_arena_pool::acquire();
    ASSERT_EQ(a.get(), used);
    EXPECT_EQ(a->arena.SpaceUsed(), 0u);  // Reset ran the destructors and freed the extra blocks
    const auto allocated = a->arena.SpaceAllocated();
    EXPECT_LE(allocated, sizeof(a->block));
    auto* response = google::protobuf::Arena::CreateMessage<tensorflow::serving::PredictResponse>(&a->arena);
    (*response->mutable_outputs())["y"].add_double_val(37.0);
    response->mutable_model_spec()->set_name("f2c");
    EXPECT_EQ(response->GetArena(), &a->arena);
    EXPECT_EQ(response->outputs().at("y").double_val(0), 37.0);
    EXPECT_EQ(a->arena.SpaceAllocated(), allocated);  // no block beyond the first
  });
}

}  // namespace
}  // namespace celsius::serving
