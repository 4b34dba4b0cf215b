#!/usr/bin/env bash
# Runs every test of the project on this machine, installing what is missing first.
#   C++ service: format check, clang-tidy, release build + ctest (unit, integration, randomized),
#   OpenAPI contract tests (pytest), microbenchmark smoke run, ASan+UBSan build + ctest,
#   bounded libFuzzer run (CELSIUS_FUZZ_SECONDS, default 60).
# Model: ruff, the SavedModel export tests (real TensorFlow; bit-identity with the service),
#   the local model server over REST and gRPC (official stubs).
# Load test: the locustfile with real Locust, the report generator on hand-computed fixtures.
# Exits non-zero on the first failure. The last line sums up: "summary: N passed, 0 failed".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log="$(mktemp)"
trap 'rm -f "$log" "$log.tidy"' EXIT
step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
"$root/scripts/install-deps.sh" all
bin="$("$root/scripts/python-env.sh" "$root/server/tests/contract/requirements.txt" "$root/model/requirements.txt" \
  "$root/model/requirements-nodeps.txt" "$root/loadtest/requirements.txt")"

cd "$root/server"
step "format check (clang-format)"
find src tests bench -name '*.cpp' -o -name '*.hpp' | sort | xargs clang-format --dry-run --Werror
echo "formatted"

# Configures, builds and runs ctest for one preset; the model-server tests must not skip.
build_and_test() {
  cmake --preset "$1" >/dev/null
  cmake --build --preset "$1"
  CELSIUS_REQUIRE_MODEL_SERVER=1 ctest --preset "$1" -j2 | tee -a "$log"
}

step "release build and tests"
build_and_test release

step "static analysis (clang-tidy, server/.clang-tidy)"
if ! find src -name '*.cpp' | sort | xargs -P2 -n4 clang-tidy -p build/release --quiet \
  --extra-arg=-DBOOST_ASIO_HAS_CO_AWAIT --extra-arg=-DBOOST_ASIO_HAS_STD_COROUTINE >"$log.tidy" 2>&1; then
  grep -v "warnings generated" "$log.tidy"
  exit 1
fi
echo "clean"

step "OpenAPI contract tests"
"$bin/pytest" -q tests/contract | tee -a "$log"

step "microbenchmarks (smoke run; numbers here are not measurements)"
build/release/celsius-microbench --benchmark_min_time=0.01 >/dev/null
echo "ran"

step "sanitizers (ASan + UBSan) build and tests"
build_and_test sanitize

step "fuzzing (libFuzzer, ${CELSIUS_FUZZ_SECONDS:-60} s)"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz --target celsius-fuzz-request
corpus="$(mktemp -d)"
build/fuzz/celsius-fuzz-request -max_total_time="${CELSIUS_FUZZ_SECONDS:-60}" -max_len=4096 \
  -dict=tests/fuzz/http.dict -print_final_stats=1 "$corpus" tests/fuzz/corpus 2>&1 | grep -E "^Done|stat::number_of_executed_units"
rm -rf "$corpus"

cd "$root"
step "Python lint (ruff)"
"$bin/ruff" check model loadtest server/tests/contract

step "model: SavedModel export and local model server tests (real TensorFlow runtime)"
PYTHONPATH="$root/model/src" TF_CPP_MIN_LOG_LEVEL=2 CELSIUS_SERVER_BINARY="$root/server/build/release/celsius-server" \
  "$bin/pytest" -q model/tests | tee -a "$log"

step "load test: locustfile (real Locust against the real service) and report generator"
PYTHONPATH="$root/loadtest/src" MPLBACKEND=Agg CELSIUS_SERVER_BINARY="$root/server/build/release/celsius-server" \
  "$bin/pytest" -q loadtest/tests | tee -a "$log"

total() { local t=0 n; while read -r n; do t=$((t + n)); done; echo "$t"; }
ctest_total=$(grep -hoE 'out of [0-9]+' "$log" | grep -oE '[0-9]+' | total)
pytest_passed=$(grep -hoE '^[0-9]+ passed' "$log" | grep -oE '^[0-9]+' | total)
# ctest and pytest counts, plus the fuzz run as one test.
printf '\nsummary: %d passed, 0 failed\n' "$((ctest_total + pytest_passed + 1))"
