#pragma once

#include <google/protobuf/arena.h>

#include <array>
#include <memory>
#include <vector>

namespace celsius::serving {

// A protobuf arena whose first 4 KiB block comes with it, so a Predict request and response
// of a few values take one allocation (the arena itself) instead of one per string, map entry
// and repeated field. Protobuf checks the block's 8-byte alignment. The block is left
// uninitialized (the arena writes before it reads). Not copyable or movable: the arena points
// into `block`.
struct message_arena {
  static google::protobuf::ArenaOptions options(std::array<char, 4096>& first_block) {
    google::protobuf::ArenaOptions o;
    o.initial_block = first_block.data();
    o.initial_block_size = first_block.size();
    return o;
  }
  alignas(16) std::array<char, 4096> block;  // before arena: it is the arena's first block
  google::protobuf::Arena arena{options(block)};
};

// message_arenas kept by the thread that released them (up to `kept` per thread), reset
// (google::protobuf::Arena::Reset: destructors run, blocks past the first freed) and handed out
// again. A 4 KiB arena is above glibc's per-thread cache sizes (tcache: up to 1,032 bytes), so
// a new one per request went through _int_malloc and, when the fast bins held chunks,
// malloc_consolidate (perf, REST Predict under model_server/bench/model-server-bench.sh).
class message_arena_pool {
 public:
  struct release {
    void operator()(message_arena* a) const {
      a->arena.Reset();
      auto& kept_here = free_list();
      if (kept_here.size() < kept) {
        kept_here.emplace_back(a);
      } else {
        delete a;
      }
    }
  };
  using handle = std::unique_ptr<message_arena, release>;

  // The most recently released arena of this thread, else a new one.
  static handle acquire() {
    auto& kept_here = free_list();
    if (kept_here.empty()) return handle(new message_arena);  // default-initialized: no 4 KiB memset
    handle a(kept_here.back().release());
    kept_here.pop_back();
    return a;
  }
  // How many arenas this thread keeps for reuse now (at most `kept`).
  static std::size_t pooled() { return free_list().size(); }
  static constexpr std::size_t kept = 64;

 private:
  static std::vector<std::unique_ptr<message_arena>>& free_list() {
    thread_local std::vector<std::unique_ptr<message_arena>> free;
    return free;
  }
};

}  // namespace celsius::serving
