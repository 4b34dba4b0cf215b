#include "model_coalescer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>

#include "loop_post.hpp"

namespace celsius {

template <std::size_t N>
void shared_histogram<N>::add(double value) noexcept {
  const auto bucket =
      static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

template <std::size_t N>
void shared_histogram<N>::render(std::string& out, std::string_view name, std::string_view help) const {
  auto it = std::back_inserter(out);
  fmt::format_to(it, "# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < N; ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    fmt::format_to(it, "{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cumulative);
  }
  cumulative += counts_[N].load(std::memory_order_relaxed);
  fmt::format_to(it, "{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, cumulative, name,
                 sum_.load(std::memory_order_relaxed), name, cumulative);
}

template class shared_histogram<values_per_call_buckets.size()>;
template class shared_histogram<queue_time_buckets.size()>;

struct request_coalescer::member {
  std::span<const double> values;  // valid while not answered
  std::size_t count = 0;
  callback done;
  clock::time_point enqueued;
  clock::time_point deadline;
  bool answered = false;                                                      // guarded by mutex_, like `where`
  std::multimap<clock::time_point, std::shared_ptr<member>>::iterator where;  // in by_deadline_
};

struct request_coalescer::batch {
  std::vector<std::shared_ptr<member>> members;
  std::vector<double> values;  // the members' values, concatenated in order
};

namespace {
model_error queue_timeout() {
  return {model_failure::timeout,
          "model server did not answer in time (the request's deadline passed while it waited "
          "for a merged call)"};
}
}  // namespace

request_coalescer::request_coalescer(coalescing_options options, sender send,
                                     shared_histogram<values_per_call_buckets.size()>& values)
    : options_(options), send_(std::move(send)), values_per_call_(values) {
  timer_ = std::thread([this] { timer_loop(); });
}

request_coalescer::~request_coalescer() {
  std::unique_lock lock(mutex_);
  stopping_ = true;  // every queued request is due now
  pump(lock);
  timer_cv_.notify_one();
  idle_cv_.wait(lock, [this] { return outstanding_ == 0; });
  lock.unlock();
  timer_cv_.notify_one();
  timer_.join();
}

void request_coalescer::submit(std::span<const double> fahrenheit, clock::time_point deadline, callback done) {
  auto m = std::make_shared<member>();
  m->values = fahrenheit;
  m->count = fahrenheit.size();
  m->done = std::move(done);
  m->enqueued = clock::now();
  m->deadline = deadline;
  std::unique_lock lock(mutex_);
  queue_.push_back(m);
  m->where = by_deadline_.emplace(deadline, m);
  queued_values_ += m->count;
  ++outstanding_;
  pump(lock);
  // The timer thread sleeps until the earliest deadline (or batch timeout) it knows of;
  // wake it only if this request needs it sooner (rare: deadlines mostly come in arrival
  // order).
  const bool still_queued = !queue_.empty() && queue_.back() == m;
  const clock::time_point needed =
      options_.timeout.count() > 0 && still_queued ? std::min(deadline, m->enqueued + options_.timeout) : deadline;
  if (needed < timer_wakes_) timer_cv_.notify_one();
}

void request_coalescer::pump(std::unique_lock<std::mutex>& lock) {
  if (pumping_) {
    repump_ = true;  // the thread already pumping goes round once more
    return;
  }
  pumping_ = true;
  do {
    repump_ = false;
    while (batches_in_flight_ < options_.max_inflight) {
      while (!queue_.empty() && queue_.front()->answered) {  // timed out while queued
        queued_values_ -= queue_.front()->count;
        queue_.pop_front();
      }
      if (queue_.empty()) break;
      const auto now = clock::now();
      const bool full = queued_values_ >= options_.max_values;
      const bool due = options_.timeout.count() == 0 || stopping_ || now - queue_.front()->enqueued >= options_.timeout;
      if (!full && !due) break;  // the timer thread sends it when the timeout has passed

      auto b = std::make_shared<batch>();
      clock::time_point deadline = clock::time_point::min();
      std::size_t total = 0;
      while (!queue_.empty()) {
        member& m = *queue_.front();
        if (!m.answered) {
          if (total + m.count > options_.max_values) break;
          total += m.count;
          deadline = std::max(deadline, m.deadline);
          b->members.push_back(queue_.front());
          queue_time_.add(std::chrono::duration<double>(now - m.enqueued).count());
        }
        queued_values_ -= m.count;
        queue_.pop_front();
      }
      // Copied under the lock: a member's values stay valid only until it is answered, and
      // only a holder of the lock can answer it.
      b->values.reserve(total);
      for (const auto& m : b->members) b->values.insert(b->values.end(), m->values.begin(), m->values.end());
      ++batches_in_flight_;
      ++outstanding_;
      lock.unlock();
      values_per_call_.add(static_cast<double>(total));
      send_(b->values, deadline, [this, b](predict_result result) { complete(b, std::move(result)); });
      lock.lock();
    }
  } while (repump_);
  pumping_ = false;
}

void request_coalescer::complete(const std::shared_ptr<batch>& b, predict_result result) {
  // Each member's own answer: its slice, or the batch's failure (what it would have had alone).
  std::vector<std::pair<member*, predict_result>> answers;
  answers.reserve(b->members.size());
  const auto* prediction = std::get_if<model_prediction>(&result);
  if (prediction != nullptr && prediction->celsius.size() != b->values.size()) {
    result = model_error{model_failure::malformed,
                         fmt::format("{} values for {} inputs", prediction->celsius.size(), b->values.size())};
    prediction = nullptr;
  }
  {
    std::lock_guard lock(mutex_);
    std::size_t offset = 0;
    for (const auto& m : b->members) {
      if (claim(*m)) {
        if (prediction != nullptr) {
          const auto first = prediction->celsius.begin() + static_cast<std::ptrdiff_t>(offset);
          answers.emplace_back(
              m.get(), model_prediction{{first, first + static_cast<std::ptrdiff_t>(m->count)}, prediction->version});
        } else {
          answers.emplace_back(m.get(), std::get<model_error>(result));
        }
      }
      offset += m->count;
    }
  }
  {
    const batched_posts posts;  // the members' hand-offs to their event loops: one post per loop
    for (auto& [m, answer] : answers) m->done(std::move(answer));
  }
  std::unique_lock lock(mutex_);
  --batches_in_flight_;
  outstanding_ -= answers.size() + 1;
  const auto next = tidy_and_next_wake();
  pump(lock);
  if (outstanding_ == 0) idle_cv_.notify_all();
  if (next < timer_wakes_ || (stopping_ && outstanding_ == 0)) timer_cv_.notify_one();
}

bool request_coalescer::claim(member& m) {
  if (m.answered) return false;
  m.answered = true;
  by_deadline_.erase(m.where);
  return true;
}

request_coalescer::clock::time_point request_coalescer::tidy_and_next_wake() {
  while (!queue_.empty() && queue_.front()->answered) {
    queued_values_ -= queue_.front()->count;
    queue_.pop_front();
  }
  clock::time_point next = by_deadline_.empty() ? clock::time_point::max() : by_deadline_.begin()->first;
  if (options_.timeout.count() > 0 && !queue_.empty() && batches_in_flight_ < options_.max_inflight) {
    next = std::min(next, queue_.front()->enqueued + options_.timeout);
  }
  return next;
}

void request_coalescer::finished(std::size_t count) {
  outstanding_ -= count;
  if (outstanding_ == 0) {
    idle_cv_.notify_all();
    timer_cv_.notify_one();
  }
}

void request_coalescer::timer_loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    timer_wakes_ = clock::time_point::min();  // awake: submitters need not notify
    if (stopping_ && outstanding_ == 0) break;
    const auto now = clock::now();
    std::vector<std::shared_ptr<member>> expired;
    while (!by_deadline_.empty() && by_deadline_.begin()->first <= now) {
      std::shared_ptr<member> m = by_deadline_.begin()->second;
      claim(*m);
      expired.push_back(std::move(m));
    }
    if (!expired.empty()) {
      // Counted before anyone is answered: a caller that sees its 504 and then reads
      // /metrics finds it counted.
      queue_timeouts_.fetch_add(expired.size(), std::memory_order_relaxed);
      lock.unlock();
      for (const auto& m : expired) m->done(queue_timeout());
      lock.lock();
      finished(expired.size());
    }
    pump(lock);  // batches whose timeout has passed
    const auto next = tidy_and_next_wake();
    if (stopping_ && outstanding_ == 0) break;
    timer_wakes_ = next;
    if (next == clock::time_point::max()) {
      timer_cv_.wait(lock);
    } else {
      timer_cv_.wait_until(lock, next);
    }
  }
}

void request_coalescer::append_metrics(std::string& out) const {
  queue_time_.render(out, "celsius_model_queue_seconds",
                     "Time /convert/model requests waited to join a merged Predict call (request coalescing).");
  std::size_t in_flight = 0;
  std::size_t queued = 0;
  {
    std::lock_guard lock(mutex_);
    in_flight = batches_in_flight_;
    queued = queue_.size();
  }
  fmt::format_to(std::back_inserter(out),
                 "# HELP celsius_model_batches_in_flight Merged Predict calls awaiting their answer.\n"
                 "# TYPE celsius_model_batches_in_flight gauge\n"
                 "celsius_model_batches_in_flight {}\n"
                 "# HELP celsius_model_queued_requests Requests waiting to join a merged Predict call.\n"
                 "# TYPE celsius_model_queued_requests gauge\n"
                 "celsius_model_queued_requests {}\n"
                 "# HELP celsius_model_queue_timeouts_total Requests answered 504 because their deadline passed "
                 "before their merged call's answer.\n"
                 "# TYPE celsius_model_queue_timeouts_total counter\n"
                 "celsius_model_queue_timeouts_total {}\n",
                 in_flight, queued, queue_timeouts_.load(std::memory_order_relaxed));
}

}  // namespace celsius
