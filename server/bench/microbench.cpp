// Google Benchmark microbenchmarks of the request hot path: parse + convert + serialize,
// and the whole router call. Run: build/release/celsius-microbench
#include <benchmark/benchmark.h>

#include <string>

#include "app.hpp"
#include "convert.hpp"
#include "json_body.hpp"
#include "json_write.hpp"

namespace {

using namespace celsius;

const std::string single_body = R"({"fahrenheit": 98.6})";

std::string batch_body(int n) {
  std::string body = R"({"fahrenheit": [)";
  for (int i = 0; i < n; ++i) body += (i ? ", " : "") + std::to_string(-400.25 + i * 0.37);
  return body + "]}";
}

void parse_single(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(parse_convert_body(single_body, 10000));
}
BENCHMARK(parse_single);

void serialize_single(benchmark::State& state) {
  for (auto _ : state)
    benchmark::DoNotOptimize(convert_body(98.6, to_celsius(98.6), "00000000-0000-4000-8000-000000000000"));
}
BENCHMARK(serialize_single);

void parse_convert_serialize_single(benchmark::State& state) {
  for (auto _ : state) {
    auto parsed = parse_convert_body(single_body, 10000);
    const double f = std::get<convert_input>(parsed).fahrenheit[0];
    benchmark::DoNotOptimize(convert_body(f, to_celsius(f), "00000000-0000-4000-8000-000000000000"));
  }
}
BENCHMARK(parse_convert_serialize_single);

void router_post_convert(benchmark::State& state) {
  metrics_registry metrics(1);
  const app application(config{}, "00000000-0000-4000-8000-000000000000", metrics);
  const request_view req{"POST", "/convert", "application/json", single_body};
  for (auto _ : state) benchmark::DoNotOptimize(application.handle(req));
}
BENCHMARK(router_post_convert);

void router_post_convert_batch(benchmark::State& state) {
  metrics_registry metrics(1);
  const app application(config{}, "00000000-0000-4000-8000-000000000000", metrics);
  const std::string body = batch_body(static_cast<int>(state.range(0)));
  const request_view req{"POST", "/convert", "application/json", body};
  for (auto _ : state) benchmark::DoNotOptimize(application.handle(req));
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(body.size()));
}
BENCHMARK(router_post_convert_batch)->Arg(10)->Arg(1000)->Arg(10000);

}  // namespace

BENCHMARK_MAIN();
