// message_arena_pool (message_arena.hpp): arenas come back reset, to the thread that released them.
#include "message_arena.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "tensorflow_serving.pb.h"

namespace celsius::serving {
namespace {

TEST(message_arena_pool, a_released_arena_is_handed_out_again_on_its_thread) {
  message_arena* first = nullptr;
  {
    auto a = message_arena_pool::acquire();
    first = a.get();
  }
  auto again = message_arena_pool::acquire();
  EXPECT_EQ(again.get(), first);
  message_arena* other_thread = nullptr;
  std::thread([&] { other_thread = message_arena_pool::acquire().get(); }).join();
  EXPECT_NE(other_thread, first);  // that thread's pool was empty: a new arena
}

TEST(message_arena_pool, a_reused_arena_starts_empty_and_holds_new_messages) {
  {
    auto a = message_arena_pool::acquire();
    auto* request = google::protobuf::Arena::CreateMessage<tensorflow::serving::PredictRequest>(&a->arena);
    request->mutable_model_spec()->set_name("a name longer than the short string buffer");
    // 80 KB of values: past the first 4 KiB block, the arena takes blocks from malloc
    for (int i = 0; i < 10000; ++i) (*request->mutable_inputs())["x"].add_double_val(i);
    EXPECT_GT(a->arena.SpaceUsed(), 80000u);
  }
  auto a = message_arena_pool::acquire();
  EXPECT_EQ(a->arena.SpaceUsed(), 0u);  // Reset freed the extra blocks and ran the destructors
  auto* response = google::protobuf::Arena::CreateMessage<tensorflow::serving::PredictResponse>(&a->arena);
  (*response->mutable_outputs())["y"].add_double_val(37.0);
  response->mutable_model_spec()->set_name("f2c");
  EXPECT_EQ(response->GetArena(), &a->arena);
  EXPECT_EQ(response->outputs().at("y").double_val(0), 37.0);
  EXPECT_LE(a->arena.SpaceUsed(), 4096u);  // in the first block
}

}  // namespace
}  // namespace celsius::serving
