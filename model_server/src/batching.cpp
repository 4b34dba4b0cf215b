#include "batching.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

namespace celsius::serving {

namespace {

std::int64_t inner_elements(const tensor_shape& shape) {
  std::int64_t n = 1;
  for (std::size_t i = 1; i < shape.dims.size(); ++i) n *= shape.dims[i];
  return n;
}

}  // namespace

status run_together(const run_target& target, std::span<run_task* const> tasks, std::int64_t padded_rows,
                    std::int64_t timeout_ms, serving_metrics& metrics) {
  const saved_model& model = *target.model;
  const run_task& first = *tasks.front();
  // Merged: the tensors' 0th dimension is the batch's (batching checked every input has one).
  const bool merged = tasks.size() > 1 || padded_rows != first.rows;
  std::vector<runtime_tensor> feeds;
  feeds.reserve(target.inputs.size());
  for (std::size_t i = 0; i < target.inputs.size(); ++i) {
    const tensorflow::DataType dtype = first.inputs[i]->dtype();
    std::vector<std::int64_t> dims = first.shapes[i].dims;
    if (merged) dims[0] = padded_rows;
    runtime_tensor tensor = model.allocate(dtype, dims);
    if (!tensor) return internal_error("TensorFlow could not allocate an input tensor");
    const std::span<std::byte> out = tensor.bytes();
    const std::size_t size = dtype_size(dtype);
    std::size_t offset = 0;
    for (const run_task* task : tasks) {
      const std::size_t bytes = static_cast<std::size_t>(task->shapes[i].elements) * size;
      decode_values(*task->inputs[i], out.subspan(offset, bytes));
      offset += bytes;
    }
    if (offset < out.size()) {
      // Padding rows (allowed_batch_sizes): copies of the batch's first row.
      const std::size_t row = static_cast<std::size_t>(inner_elements(first.shapes[i])) * size;
      if (offset == 0 || row == 0) {
        std::memset(out.data() + offset, 0, out.size() - offset);
      } else {
        for (; offset + row <= out.size(); offset += row) std::memcpy(out.data() + offset, out.data(), row);
      }
    }
    feeds.push_back(std::move(tensor));
  }
  std::vector<runtime_tensor> results;
  const auto started = clock_type::now();
  status run = model.run(target.inputs, feeds, target.outputs, results, timeout_ms);
  metrics.runtime(target.model_name, std::chrono::duration<double, std::micro>(clock_type::now() - started).count());
  if (!run.ok()) return run;

  for (std::size_t o = 0; o < target.outputs.size(); ++o) {
    const runtime_tensor& result = results[o];
    const std::string& alias = target.outputs[o]->alias;
    if (!merged) {
      encode_tensor(result.dtype(), result.dims(), result.bytes(), (*first.response->mutable_outputs())[alias],
                    target.as_content);
      continue;
    }
    // BatchingSession::SplitOutputTensors.
    if (result.dims().empty()) return failed_precondition("Batched output tensor has 0 dimensions");
    if (result.dims()[0] != padded_rows) {
      return failed_precondition(
          "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension sizes of the input "
          "tensors");
    }
    const std::size_t row_bytes = padded_rows == 0 ? 0 : result.bytes().size() / static_cast<std::size_t>(padded_rows);
    std::vector<std::int64_t> dims = result.dims();
    std::size_t offset = 0;
    for (run_task* task : tasks) {
      dims[0] = task->rows;
      const std::size_t bytes = row_bytes * static_cast<std::size_t>(task->rows);
      encode_tensor(result.dtype(), dims, result.bytes().subspan(offset, bytes),
                    (*task->response->mutable_outputs())[alias], target.as_content);
      offset += bytes;
    }
  }
  return {};
}

batch_scheduler::batch_scheduler(batching_options options, serving_metrics& metrics)
    : options_(std::move(options)), metrics_(metrics) {
  for (std::int64_t i = 0; i < options_.num_batch_threads; ++i) threads_.emplace_back([this] { work(); });
}

batch_scheduler::~batch_scheduler() { stop(); }

void batch_scheduler::flush() {
  {
    std::lock_guard lock(mutex_);
    flushing_ = true;
  }
  ready_.notify_all();
}

void batch_scheduler::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

status batch_scheduler::schedule(const std::shared_ptr<batch_queue>& queue, std::unique_ptr<run_task>& task) {
  if (task->rows > options_.max_batch_size) {
    return invalid_argument(
        fmt::format("Task size {} is larger than maximum input batch size {}", task->rows, options_.max_batch_size));
  }
  metrics_.input_batch(task->rows);
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return unavailable("The batch scheduler is stopping");
    auto& batches = queue->batches_;
    const bool fits =
        !batches.empty() && !batches.back()->closed && batches.back()->rows + task->rows <= options_.max_batch_size;
    if (!fits) {
      if (static_cast<std::int64_t>(batches.size()) >= options_.max_enqueued_batches) {
        return unavailable("The batch scheduling queue to which this task was submitted is full");
      }
      if (!batches.empty()) batches.back()->closed = true;
      batches.push_back(std::make_unique<batch_queue::batch>());
      batches.back()->opened = clock_type::now();
    }
    auto& open = *batches.back();
    open.rows += task->rows;
    open.tasks.push_back(std::move(task));
    if (open.rows >= options_.max_batch_size) open.closed = true;
    if (!queue->active_) {
      queue->active_ = true;
      active_.push_back(queue);
    }
  }
  ready_.notify_one();
  return {};
}

void batch_scheduler::work() {
  const auto timeout = std::chrono::microseconds(options_.batch_timeout_micros);
  std::unique_lock lock(mutex_);
  for (;;) {
    std::shared_ptr<batch_queue> chosen;
    auto earliest = clock_type::time_point::max();
    const auto now = clock_type::now();
    for (auto it = active_.begin(); it != active_.end(); ++it) {
      const auto& front = *(*it)->batches_.front();
      const auto due = front.opened + timeout;
      if (front.closed || stopping_ || flushing_ || timeout.count() == 0 || now >= due) {
        chosen = *it;
        active_.erase(it);
        break;
      }
      earliest = std::min(earliest, due);
    }
    if (!chosen) {
      if (stopping_) return;  // nothing queued is left
      if (earliest == clock_type::time_point::max()) {
        ready_.wait(lock);
      } else {
        ready_.wait_until(lock, earliest);
      }
      continue;
    }
    auto b = std::move(chosen->batches_.front());
    chosen->batches_.pop_front();
    if (chosen->batches_.empty()) {
      chosen->active_ = false;
    } else {
      active_.push_back(chosen);  // its next batch waits behind the other queues
    }
    lock.unlock();
    if (!active_.empty()) ready_.notify_one();
    process(*chosen, std::move(b));
    lock.lock();
  }
}

void batch_scheduler::process(batch_queue& queue, std::unique_ptr<batch_queue::batch> b) {
  const auto now = clock_type::now();
  std::vector<run_task*> tasks;
  tasks.reserve(b->tasks.size());
  auto deadline = clock_type::time_point::min();
  for (auto& t : b->tasks) {
    tasks.push_back(t.get());
    deadline = std::max(deadline, t->deadline);
  }
  status result;
  if (deadline <= now) {
    result = {code::RESOURCE_EXHAUSTED, "Run() timeout exceeded while waiting in batching queue"};
  } else {
    std::int64_t padded = b->rows;
    for (const std::int64_t allowed : options_.allowed_batch_sizes) {
      if (allowed >= b->rows) {
        padded = allowed;
        break;
      }
    }
    std::int64_t timeout_ms = 0;
    if (deadline != clock_type::time_point::max()) {
      timeout_ms = std::max<std::int64_t>(1, std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count());
    }
    result = run_together(queue.target(), tasks, padded, timeout_ms, metrics_);
    if (result.ok()) metrics_.processed_batch(padded, padded - b->rows);
  }
  for (auto& t : b->tasks) {
    auto done = std::move(t->done);
    done(result);
  }
}

}  // namespace celsius::serving
