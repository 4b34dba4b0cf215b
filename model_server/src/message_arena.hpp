#pragma once

#include <google/protobuf/arena.h>

#include <array>

namespace celsius::serving {

// A protobuf arena whose first 4 KiB block comes with it, so a Predict request and response
// of a few values take one allocation (the arena itself) instead of one per string, map entry
// and repeated field. Protobuf checks the block's 8-byte alignment. Not copyable or movable:
// the arena points into `block`.
struct message_arena {
  static google::protobuf::ArenaOptions options(std::array<char, 4096>& first_block) {
    google::protobuf::ArenaOptions o;
    o.initial_block = first_block.data();
    o.initial_block_size = first_block.size();
    return o;
  }
  alignas(16) std::array<char, 4096> block{};  // before arena: it is the arena's first block
  google::protobuf::Arena arena{options(block)};
};

}  // namespace celsius::serving
