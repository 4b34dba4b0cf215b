#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "metrics.hpp"
#include "model_manager.hpp"
#include "tensor_codec.hpp"
#include "text_config.hpp"

namespace celsius::serving {

using clock_type = std::chrono::steady_clock;

// One Predict call, ready to run: its input protos (checked with proto_shape) in the
// signature's input order, and where its outputs go.
struct run_task {
  servable_handle owner;  // keeps the version loaded while the task waits and runs
  std::vector<const tensorflow::TensorProto*> inputs;
  std::vector<tensor_shape> shapes;
  std::int64_t rows = 0;  // 0th dimension (batching)
  clock_type::time_point enqueued{};
  clock_type::time_point deadline = clock_type::time_point::max();
  tensorflow::serving::PredictResponse* response = nullptr;
  std::function<void(status)> done;
};

// What every task of a queue runs: the same session, inputs and outputs.
struct run_target {
  const saved_model* model = nullptr;
  std::string model_name;
  std::vector<const tensor_binding*> inputs;   // the signature's inputs, by alias
  std::vector<const tensor_binding*> outputs;  // fetched outputs, by alias
  bool as_content = false;                     // --enable_serialization_as_tensor_content
};

// Runs `tasks` in one TF_SessionRun: each input concatenated along dimension 0 (rows of
// `padded_rows` - sum(rows) padding copied from the first row), outputs split back into each
// task's response. Fails every task alike (TensorFlow's status, or FAILED_PRECONDITION when an
// output has no 0th dimension of the batch's size, as BatchingSession reports it). Records
// the run's latency.
status run_together(const run_target& target, std::span<run_task* const> tasks, std::int64_t padded_rows,
                    std::int64_t timeout_ms, serving_metrics& metrics);

// Tasks of one (version, signature, output filter, input dtypes and non-batch dimensions);
// lives in servable::batch_queues. Its state is guarded by the scheduler's mutex.
class batch_queue {
 public:
  explicit batch_queue(run_target target) : target_(std::move(target)) {}
  const run_target& target() const { return target_; }

 private:
  friend class batch_scheduler;
  struct batch {
    std::vector<std::unique_ptr<run_task>> tasks;
    std::int64_t rows = 0;
    clock_type::time_point opened{};
    bool closed = false;
  };
  run_target target_;
  std::deque<std::unique_ptr<batch>> batches_;  // front: oldest; back: the open one
  bool active_ = false;
};

// TF Serving's server-side batching (BatchingSession over TensorFlow's SharedBatchScheduler,
// batching_util/shared_batch_scheduler.h), for every queue of every version:
//   - a task joins its queue's open batch if the rows fit in max_batch_size, else a new batch
//     is opened; a task larger than max_batch_size is refused (INVALID_ARGUMENT "Task size N is
//     larger than maximum input batch size M"), and so is a task that needs a new batch when
//     max_enqueued_batches are already waiting (UNAVAILABLE "The batch scheduling queue to
//     which this task was submitted is full"), at once;
//   - num_batch_threads threads take batches, oldest queue first, once a batch is full or its
//     oldest task has waited batch_timeout_micros (0: as soon as a thread is free, so batches
//     grow while every thread is busy);
//   - a batch whose tasks' deadlines have all passed is not run (RESOURCE_EXHAUSTED "Run()
//     timeout exceeded while waiting in batching queue"); otherwise the run's timeout is the
//     latest deadline of its tasks;
//   - allowed_batch_sizes pads a batch up to the next allowed size.
class batch_scheduler {
 public:
  batch_scheduler(batching_options options, serving_metrics& metrics);
  ~batch_scheduler();
  batch_scheduler(const batch_scheduler&) = delete;
  batch_scheduler& operator=(const batch_scheduler&) = delete;

  // Enqueues the task (moved from `task`), or refuses at once: `task` then stays with the
  // caller and its `done` is not called.
  status schedule(const std::shared_ptr<batch_queue>& queue, std::unique_ptr<run_task>& task);
  // Shutdown begins: batches no longer wait for batch_timeout_micros (requests in flight
  // finish as soon as a thread is free).
  void flush();
  // Runs what is queued, then stops the threads; later schedule() calls fail UNAVAILABLE.
  void stop();

  const batching_options& options() const { return options_; }

 private:
  void work();
  void process(batch_queue& queue, std::unique_ptr<batch_queue::batch> b);

  const batching_options options_;
  serving_metrics& metrics_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::list<std::shared_ptr<batch_queue>> active_;  // queues with batches, served round-robin
  bool stopping_ = false;
  bool flushing_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace celsius::serving
