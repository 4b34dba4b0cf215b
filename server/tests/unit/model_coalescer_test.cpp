// Request coalescing as a plain object: a scripted sender that holds each merged call until
// the test answers it (from the test thread or another), real threads for the callers.
#include "model_coalescer.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <future>
#include <random>
#include <thread>

#include "convert.hpp"

namespace celsius {
namespace {

using namespace std::chrono_literals;
using clock_type = request_coalescer::clock;

// The merged calls the coalescer made, held until the test answers them.
class held_calls {
 public:
  struct call {
    std::vector<double> values;
    clock_type::time_point deadline;
    clock_type::time_point sent;
    request_coalescer::callback done;
  };

  request_coalescer::sender sender() {
    return [this](std::span<const double> values, clock_type::time_point deadline, request_coalescer::callback done) {
      std::lock_guard lock(mutex_);
      calls_.push_back({{values.begin(), values.end()}, deadline, clock_type::now(), std::move(done)});
      cv_.notify_all();
    };
  }
  // Waits for the n-th call (0-based) to be made; a copy of its values, deadline and time.
  call wait_for(std::size_t n, std::chrono::milliseconds timeout = 30s) {
    std::unique_lock lock(mutex_);
    if (!cv_.wait_for(lock, timeout, [&] { return calls_.size() > n; })) throw std::runtime_error("call never made");
    return {calls_[n].values, calls_[n].deadline, calls_[n].sent, nullptr};
  }
  std::size_t count() {
    std::lock_guard lock(mutex_);
    return calls_.size();
  }
  // Answers call n with the correct values (or `result` when given).
  void answer(std::size_t n, std::optional<predict_result> result = std::nullopt) {
    request_coalescer::callback done;
    std::vector<double> values;
    {
      std::lock_guard lock(mutex_);
      done = std::move(calls_.at(n).done);
      values = calls_.at(n).values;
    }
    if (!result) {
      std::vector<double> celsius;
      for (const double f : values) celsius.push_back(to_celsius(f));
      result = model_prediction{std::move(celsius), 1};
    }
    done(std::move(*result));
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<call> calls_;
};

// One caller's request and its answer.
struct caller {
  explicit caller(std::vector<double> v) : values(std::move(v)) {}
  std::vector<double> values;
  std::promise<predict_result> answer;
  std::atomic<int> answers{0};
  request_coalescer::callback done() {
    return [this](predict_result r) {
      if (++answers == 1) answer.set_value(std::move(r));
    };
  }
  predict_result get(std::chrono::milliseconds timeout = 30s) {
    auto f = answer.get_future();
    if (f.wait_for(timeout) != std::future_status::ready) throw std::runtime_error("never answered");
    return f.get();
  }
};

shared_histogram<values_per_call_buckets.size()> values_histogram() {
  return shared_histogram<values_per_call_buckets.size()>(values_per_call_buckets);
}

std::vector<double> celsius_of(const std::vector<double>& f) {
  std::vector<double> out;
  for (const double v : f) out.push_back(to_celsius(v));
  return out;
}

TEST(request_coalescer, requests_queued_while_the_slot_is_busy_go_in_one_call_each_with_its_own_slice) {
  held_calls calls;
  auto histogram = values_histogram();
  request_coalescer coalescer({100, 0us, 1}, calls.sender(), histogram);
  std::vector<std::unique_ptr<caller>> callers;
  for (int i = 0; i < 5; ++i) callers.push_back(std::make_unique<caller>(std::vector<double>{32.0 + i, 212.0 + i}));
  const auto deadline = clock_type::now() + 60s;
  coalescer.submit(callers[0]->values, deadline, callers[0]->done());
  EXPECT_EQ(calls.wait_for(0).values, callers[0]->values);  // a free slot: sent at once, alone
  for (int i = 1; i < 5; ++i) coalescer.submit(callers[i]->values, deadline, callers[i]->done());
  EXPECT_EQ(calls.count(), 1u) << "the only slot is busy: the others wait";
  calls.answer(0);
  const auto merged = calls.wait_for(1);
  EXPECT_EQ(merged.values, (std::vector<double>{33, 213, 34, 214, 35, 215, 36, 216}));  // arrival order
  calls.answer(1);
  for (const auto& c : callers) {
    const auto result = c->get();
    ASSERT_TRUE(std::holds_alternative<model_prediction>(result));
    EXPECT_EQ(std::get<model_prediction>(result).celsius, celsius_of(c->values));
    EXPECT_EQ(std::get<model_prediction>(result).version, 1);
    EXPECT_EQ(c->answers, 1);
  }
  std::string metrics;
  histogram.render(metrics, "v", "h");
  EXPECT_NE(metrics.find("v_count 2\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("v_sum 10\n"), std::string::npos) << metrics;
}

TEST(request_coalescer, a_batch_never_exceeds_max_values_and_order_is_kept) {
  held_calls calls;
  auto histogram = values_histogram();
  request_coalescer coalescer({4, 0us, 1}, calls.sender(), histogram);
  std::vector<std::unique_ptr<caller>> callers;
  for (const auto& v : std::vector<std::vector<double>>{{1}, {2, 3}, {4, 5, 6}, {7}, {8, 9, 10, 11}, {12}}) {
    callers.push_back(std::make_unique<caller>(v));
  }
  const auto deadline = clock_type::now() + 60s;
  for (auto& c : callers) coalescer.submit(c->values, deadline, c->done());
  // {1} alone (slot free); then {2,3} (+{4,5,6} would pass 4); {4,5,6,7}; {8..11}; {12}.
  const std::vector<std::vector<double>> expected = {{1}, {2, 3}, {4, 5, 6, 7}, {8, 9, 10, 11}, {12}};
  for (std::size_t n = 0; n < expected.size(); ++n) {
    EXPECT_EQ(calls.wait_for(n).values, expected[n]) << n;
    EXPECT_EQ(calls.count(), n + 1) << "one call in flight at a time";
    calls.answer(n);
  }
  for (const auto& c : callers) EXPECT_EQ(std::get<model_prediction>(c->get()).celsius, celsius_of(c->values));
}

TEST(request_coalescer, max_inflight_calls_go_out_at_once) {
  held_calls calls;
  auto histogram = values_histogram();
  request_coalescer coalescer({10, 0us, 3}, calls.sender(), histogram);
  std::vector<std::unique_ptr<caller>> callers;
  for (int i = 0; i < 6; ++i) callers.push_back(std::make_unique<caller>(std::vector<double>{double(i)}));
  const auto deadline = clock_type::now() + 60s;
  for (auto& c : callers) coalescer.submit(c->values, deadline, c->done());
  calls.wait_for(2);
  EXPECT_EQ(calls.count(), 3u);
  calls.answer(1);
  EXPECT_EQ(calls.wait_for(3).values, (std::vector<double>{3, 4, 5}));
  calls.answer(0);
  calls.answer(2);
  calls.answer(3);
  for (const auto& c : callers) EXPECT_EQ(std::get<model_prediction>(c->get()).celsius, celsius_of(c->values));
}

TEST(request_coalescer, a_failed_call_fails_every_member_as_it_would_have_failed_alone) {
  for (const model_failure kind :
       {model_failure::unavailable, model_failure::timeout, model_failure::error, model_failure::malformed}) {
    held_calls calls;
    auto histogram = values_histogram();
    request_coalescer coalescer({10, 0us, 1}, calls.sender(), histogram);
    caller first({1}), second({2}), third({3, 4});
    const auto deadline = clock_type::now() + 60s;
    coalescer.submit(first.values, deadline, first.done());
    coalescer.submit(second.values, deadline, second.done());
    coalescer.submit(third.values, deadline, third.done());
    calls.answer(0);
    calls.wait_for(1);
    calls.answer(1, model_error{kind, "the model server's message"});
    for (caller* c : {&second, &third}) {
      const auto result = c->get();
      ASSERT_TRUE(std::holds_alternative<model_error>(result));
      EXPECT_EQ(std::get<model_error>(result).kind, kind);
      EXPECT_EQ(std::get<model_error>(result).message, "the model server's message");
    }
    EXPECT_TRUE(std::holds_alternative<model_prediction>(first.get()));
  }
}

TEST(request_coalescer, a_reply_of_the_wrong_length_is_malformed_for_every_member) {
  held_calls calls;
  auto histogram = values_histogram();
  request_coalescer coalescer({10, 0us, 1}, calls.sender(), histogram);
  caller a({1, 2}), b({3});
  const auto deadline = clock_type::now() + 60s;
  coalescer.submit(a.values, deadline, a.done());
  calls.wait_for(0);
  coalescer.submit(b.values, deadline, b.done());
  calls.answer(0, model_prediction{{1.0}, 1});  // 1 value for 2
  calls.wait_for(1);
  calls.answer(1, model_prediction{{1.0, 2.0}, 1});  // 2 values for 1
  EXPECT_EQ(std::get<model_error>(a.get()).kind, model_failure::malformed);
  EXPECT_EQ(std::get<model_error>(b.get()).kind, model_failure::malformed);
}

TEST(request_coalescer, a_request_whose_deadline_passes_while_queued_gets_a_timeout_then) {
  held_calls calls;
  auto histogram = values_histogram();
  request_coalescer coalescer({10, 0us, 1}, calls.sender(), histogram);
  caller blocker({1}), queued({2}), patient({3});
  coalescer.submit(blocker.values, clock_type::now() + 60s, blocker.done());
  calls.wait_for(0);  // the only slot stays busy
  const auto submitted = clock_type::now();
  coalescer.submit(queued.values, submitted + 200ms, queued.done());
  coalescer.submit(patient.values, submitted + 60s, patient.done());
  const auto result = queued.get();
  const auto took = clock_type::now() - submitted;
  ASSERT_TRUE(std::holds_alternative<model_error>(result));
  EXPECT_EQ(std::get<model_error>(result).kind, model_failure::timeout);
  EXPECT_GE(took, 200ms);
  EXPECT_LT(took, 5s) << "answered long after its deadline";
  // It never reaches the model server; the next call carries only the patient request.
  calls.answer(0);
  EXPECT_EQ(calls.wait_for(1).values, std::vector<double>{3});
  calls.answer(1);
  EXPECT_EQ(std::get<model_prediction>(patient.get()).celsius, celsius_of({3}));
  EXPECT_EQ(queued.answers, 1);
  std::string metrics;
  coalescer.append_metrics(metrics);
  EXPECT_NE(metrics.find("celsius_model_queue_timeouts_total 1\n"), std::string::npos) << metrics;
}

TEST(request_coalescer, a_member_of_a_call_still_out_gets_a_timeout_at_its_own_deadline) {
  held_calls calls;
  auto histogram = values_histogram();
  request_coalescer coalescer({10, 0us, 1}, calls.sender(), histogram);
  caller blocker({1}), early({2}), late({3});
  coalescer.submit(blocker.values, clock_type::now() + 60s, blocker.done());
  calls.wait_for(0);
  const auto submitted = clock_type::now();
  coalescer.submit(early.values, submitted + 300ms, early.done());
  coalescer.submit(late.values, submitted + 60s, late.done());
  calls.answer(0);
  const auto merged = calls.wait_for(1);
  EXPECT_EQ(merged.values, (std::vector<double>{2, 3}));
  EXPECT_EQ(merged.deadline, submitted + 60s) << "a merged call lasts as long as its latest member may wait";
  const auto result = early.get();  // the merged call is still out
  EXPECT_EQ(std::get<model_error>(result).kind, model_failure::timeout);
  EXPECT_LT(clock_type::now() - submitted, 5s);
  calls.answer(1);
  EXPECT_EQ(std::get<model_prediction>(late.get()).celsius, celsius_of({3}));
  EXPECT_EQ(early.answers, 1) << "answered twice";
}

TEST(request_coalescer, a_batch_timeout_waits_for_companions_unless_the_batch_is_full) {
  held_calls calls;
  auto histogram = values_histogram();
  request_coalescer coalescer({3, 300ms, 1}, calls.sender(), histogram);
  caller a({1}), b({2}), c({3}), d({4});
  const auto started = clock_type::now();
  coalescer.submit(a.values, started + 60s, a.done());
  coalescer.submit(b.values, started + 60s, b.done());
  const auto first = calls.wait_for(0);
  EXPECT_EQ(first.values, (std::vector<double>{1, 2}));
  EXPECT_GE(first.sent - started, 300ms) << "sent before the batch timeout";
  calls.answer(0);
  const auto full_from = clock_type::now();
  for (caller* x : {&c, &d}) coalescer.submit(x->values, full_from + 60s, x->done());
  caller e({5});
  coalescer.submit(e.values, full_from + 60s, e.done());  // 3 values: full, sent at once
  const auto second = calls.wait_for(1);
  EXPECT_EQ(second.values, (std::vector<double>{3, 4, 5}));
  EXPECT_LT(second.sent - full_from, 250ms) << "a full batch waited for the timeout";
  calls.answer(1);
  for (caller* x : {&a, &b, &c, &d, &e}) EXPECT_EQ(std::get<model_prediction>(x->get()).celsius, celsius_of(x->values));
}

TEST(request_coalescer, destruction_sends_what_is_queued_and_waits_for_every_answer) {
  held_calls calls;
  auto histogram = values_histogram();
  std::vector<std::unique_ptr<caller>> callers;
  for (int i = 0; i < 4; ++i) callers.push_back(std::make_unique<caller>(std::vector<double>{double(i)}));
  std::thread answerer;
  {
    // A long batch timeout: without the drain, the last requests would wait for it.
    request_coalescer coalescer({2, 10s, 1}, calls.sender(), histogram);
    for (auto& c : callers) coalescer.submit(c->values, clock_type::now() + 60s, c->done());
    answerer = std::thread([&] {
      for (std::size_t n = 0; n < 2; ++n) {
        calls.wait_for(n);
        std::this_thread::sleep_for(50ms);
        calls.answer(n);
      }
    });
  }  // the destructor returns only once every request has its answer
  for (const auto& c : callers) EXPECT_EQ(c->answers, 1);
  answerer.join();
  for (const auto& c : callers) EXPECT_EQ(std::get<model_prediction>(c->get()).celsius, celsius_of(c->values));
}

TEST(request_coalescer, many_threads_each_get_exactly_their_own_answer) {
  held_calls calls;
  auto histogram = values_histogram();
  std::atomic<bool> done{false};
  std::atomic<std::size_t> answered_calls{0};
  std::vector<std::unique_ptr<caller>> callers;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> temps(-459.67, 1000);
  std::uniform_int_distribution<int> sizes(1, 6);
  for (int i = 0; i < 4000; ++i) {
    std::vector<double> v(static_cast<std::size_t>(sizes(rng)));
    for (double& x : v) x = temps(rng);
    callers.push_back(std::make_unique<caller>(std::move(v)));
  }
  {
    request_coalescer coalescer({64, 0us, 4}, calls.sender(), histogram);
    // The "model server": answers calls in whatever order they arrive, from its own thread.
    std::thread server([&] {
      std::size_t next = 0;
      while (!done || next < calls.count()) {
        if (next < calls.count()) {
          calls.answer(next++);
          ++answered_calls;
        } else {
          std::this_thread::sleep_for(50us);
        }
      }
    });
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        for (std::size_t i = static_cast<std::size_t>(t); i < callers.size(); i += 8) {
          coalescer.submit(callers[i]->values, clock_type::now() + 60s, callers[i]->done());
        }
      });
    }
    for (auto& t : threads) t.join();
    for (const auto& c : callers) {
      const auto result = c->get();
      ASSERT_TRUE(std::holds_alternative<model_prediction>(result));
      const auto& got = std::get<model_prediction>(result).celsius;
      const auto want = celsius_of(c->values);
      ASSERT_EQ(got.size(), want.size());
      ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(double)), 0);
    }
    done = true;
    server.join();
  }
  for (const auto& c : callers) EXPECT_EQ(c->answers, 1);
  EXPECT_LT(answered_calls.load(), callers.size()) << "nothing was merged";
}

}  // namespace
}  // namespace celsius
