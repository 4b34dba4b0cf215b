#!/usr/bin/env bash
# Runs every test of the project on this machine, installing what is missing first.
#   scripts/test-all.sh                 every stage (what CI runs: .ci/run)
#   scripts/test-all.sh cpp python      some stages: cpp, python, charts, images, cluster
# cpp:    clang-format, release build (service and celsius-model-server, whose TensorFlow C API
#         comes from the tensorflow-cpu wheel installed into .venv first) + ctest (unit,
#         integration with the real model server, randomized), clang-tidy, OpenAPI contract
#         tests (with a schemathesis run: every check, 25 examples per operation, fixed seed,
#         15 min deadline), microbenchmark smoke run, ASan+UBSan build + ctest (the model
#         server's logic; its integration tests use the release model server:
#         model_server/README.md), bounded libFuzzer run (CELSIUS_FUZZ_SECONDS, default 60).
# python: ruff; the SavedModel export; celsius-model-server against the official TF Serving
#         client (protocols, versions, batching, payloads; real TensorFlow); scripts that start
#         processes leave none, run.sh checks its options first (scripts/tests); the locustfile
#         with real Locust, the report generator, the sweep's step logic, the whole main job end
#         to end (Locust scenarios and a short capacity sweep with vegeta).
# charts: helm lint --strict, rendered-manifest tests, values schema, kubeconform, kube-score;
#         actionlint on the GitHub workflow.
# images: hadolint, every image built with Docker (engine started if needed), containers run
#         and checked, the compose stack up with celsius/model-server; image sizes printed.
# cluster: a real single-node Kubernetes cluster (scripts/cluster.sh; binaries built once per
#         machine and cached): the cluster itself (DNS, metrics API, no egress, no registry),
#         then both charts on it (install + helm test, NodePort, HPA under Locust load, upgrade
#         and model-server outage under load, gRPC spread, uninstall), the main job on it
#         (`scripts/run.sh --cluster`, 5 s per scenario; and stopped mid-run), then `down` twice
#         leaving nothing behind. The cluster is taken down on every exit path.
# Exits non-zero on the first failure. The last line sums up: "summary: N passed, 0 failed (S s)".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stages=("$@")
((${#stages[@]})) || stages=(cpp python charts images cluster)
log="$(mktemp)"
cluster_started=0
cluster_build_pid=""
tools_pid=""
cleanup() {
  rm -f "$log" "$log.tidy" "$log.cluster-build" "$log.tools"
  # The background builds are process groups of their own (setsid): the Go compilers go with them.
  [[ -z "$cluster_build_pid" ]] || kill -- "-$cluster_build_pid" 2>/dev/null || true
  [[ -z "$tools_pid" ]] || kill -- "-$tools_pid" 2>/dev/null || true
  if ((cluster_started)); then "$root/scripts/cluster.sh" down || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
step() { printf '\n==> %s [%d s]\n' "$*" "$SECONDS"; }  # seconds since the start: where CI's time goes
fuzz_runs=0

step "dependencies"
requirements=("$root/deploy/requirements.txt")
# The cluster checks share the cluster job's code (loadtest/src/celsius_loadtest/kube.py).
[[ " ${stages[*]} " != *" cluster "* ]] || requirements+=("$root/loadtest/requirements.txt")
if [[ " ${stages[*]} " == *" cpp "* || " ${stages[*]} " == *" python "* ]]; then
  # The C++ toolchain and libraries (Debian 12), and everything the tests drive; the
  # tensorflow-cpu wheel (model/requirements.txt) must be in .venv before the C++ build:
  # celsius-model-server is built against its C API.
  "$root/scripts/install-deps.sh" all
  requirements+=("$root/server/tests/contract/requirements.txt" "$root/model/requirements.txt"
    "$root/model/requirements-nodeps.txt" "$root/loadtest/requirements.txt")
fi
bin="$("$root/scripts/python-env.sh" "${requirements[@]}")"

# The Go builds take minutes on a fresh machine (cached afterwards): the cluster's binaries
# (many minutes) and the Go-built tools (helm, kubeconform, kube-score, actionlint, vegeta;
# about 2 min of both CPUs). With other stages to run first, they start now, at the lowest
# priority, on the CPU those stages leave idle (waits, downloads, single-threaded steps); the
# stages that use them wait for them. One Go toolchain first (go-env.sh fetches it if missing),
# so the two builds do not both fetch it.
has() { [[ " ${stages[*]} " == *" $1 "* ]]; }
cluster_in_background=0 tools_in_background=0
if has cluster && [[ "${stages[0]}" != cluster ]]; then cluster_in_background=1; fi
if [[ "${stages[0]}" == cpp ]] && { has python || has charts; }; then tools_in_background=1; fi
if ((cluster_in_background || tools_in_background)); then "$root/scripts/go-env.sh" >/dev/null; fi
if ((cluster_in_background)); then
  setsid nice -n 19 "$root/scripts/cluster.sh" build-binaries >"$log.cluster-build" 2>&1 </dev/null &
  cluster_build_pid=$!
fi
if ((tools_in_background)); then
  setsid nice -n 19 "$root/scripts/install-tools.sh" >"$log.tools" 2>&1 </dev/null &
  tools_pid=$!
fi
# Waits for the background tools build, if one runs; its failure ends the run with its log.
wait_tools() {
  [[ -n "$tools_pid" ]] || return 0
  local code=0
  wait "$tools_pid" || code=$?
  tools_pid=""
  ((code == 0)) || { cat "$log.tools"; echo "the background tools build failed ($code)" >&2; exit 1; }
}

# Configures, builds and runs ctest for one preset; the model-server tests must not skip.
build_and_test() {
  cmake --preset "$1" -DCELSIUS_REQUIRE_TENSORFLOW=ON >/dev/null
  cmake --build --preset "$1"
  CELSIUS_REQUIRE_MODEL_SERVER=1 ctest --preset "$1" -j2 | tee -a "$log"
}

release_build() {
  cd "$root"
  cmake --preset release -DCELSIUS_REQUIRE_TENSORFLOW=ON >/dev/null
  cmake --build --preset release
}

# The C++ sources clang-format and clang-tidy check (the CMake project: server/, model_server/).
cpp_sources() {
  find server/src server/tests server/bench model_server/src model_server/tests model_server/bench \
    \( -name '*.cpp' -o -name '*.hpp' \) | sort
}

stage_cpp() {
  cd "$root"
  step "format check (clang-format)"
  cpp_sources | xargs clang-format --dry-run --Werror
  echo "formatted"

  step "release build and tests"
  build_and_test release

  step "static analysis (clang-tidy, .clang-tidy)"
  if ! find server/src model_server/src -name '*.cpp' | sort | xargs -P2 -n4 clang-tidy -p build/release --quiet \
    --extra-arg=-DBOOST_ASIO_HAS_CO_AWAIT --extra-arg=-DBOOST_ASIO_HAS_STD_COROUTINE >"$log.tidy" 2>&1; then
    grep -v "warnings generated" "$log.tidy"
    exit 1
  fi
  echo "clean"

  step "OpenAPI contract tests (jsonschema on real answers; schemathesis, every check, bounded)"
  "$bin/pytest" -q server/tests/contract | tee -a "$log"

  step "microbenchmarks (smoke run; numbers here are not measurements)"
  build/release/celsius-microbench --benchmark_min_time=0.01 >/dev/null
  echo "ran"

  step "sanitizers (ASan + UBSan) build and tests"
  build_and_test sanitize

  step "fuzzing (libFuzzer, ${CELSIUS_FUZZ_SECONDS:-60} s)"
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz --target celsius-fuzz-request
  local corpus
  corpus="$(mktemp -d)"
  # A finding is printed (the violated invariant, the input, saved as build/fuzz/crash-*) and fails the stage; add
  # the input to server/tests/fuzz/corpus with a test of its right answer.
  if ! build/fuzz/celsius-fuzz-request -max_total_time="${CELSIUS_FUZZ_SECONDS:-60}" -max_len=4096 \
    -dict=server/tests/fuzz/http.dict -print_final_stats=1 -artifact_prefix=build/fuzz/ "$corpus" server/tests/fuzz/corpus \
    >"$corpus.log" 2>&1; then
    grep -E "invariant violated|ERROR: |runtime error:|^SUMMARY:|Test unit written|^Base64" "$corpus.log" >&2 \
      || tail -n 50 "$corpus.log" >&2  # failed before fuzzing (a flag, the dictionary) or killed
    rm -rf "$corpus" "$corpus.log"
    return 1
  fi
  grep -E "^Done|stat::number_of_executed_units" "$corpus.log"
  rm -rf "$corpus" "$corpus.log"
  fuzz_runs=1
}

stage_python() {
  release_build >/dev/null  # the Python tests drive the real service
  wait_tools
  "$root/scripts/install-tools.sh" vegeta >/dev/null  # the main job's sweep (go install, pinned)
  cd "$root"
  step "Python lint (ruff)"
  "$bin/ruff" check model model_server loadtest server/tests/contract deploy/tests scripts/tests

  step "model: SavedModel export (real TensorFlow runtime)"
  PYTHONPATH="$root/model/src" TF_CPP_MIN_LOG_LEVEL=2 CELSIUS_SERVER_BINARY="$root/build/release/celsius-server" \
    "$bin/pytest" -q model/tests | tee -a "$log"

  step "model server: TF Serving's protocols with the official client, versions, batching, payloads"
  PYTHONPATH="$root/model/src" TF_CPP_MIN_LOG_LEVEL=2 CELSIUS_SERVER_BINARY="$root/build/release/celsius-server" \
    CELSIUS_MODEL_SERVER_BINARY="$root/build/release/celsius-model-server" \
    "$bin/pytest" -q -p no:warnings model_server/tests | tee -a "$log"

  step "scripts that start processes leave none behind (run briefly; end, SIGINT, SIGTERM); run.sh refuses wrong options first"
  CELSIUS_PYTHON="$bin/python" "$bin/pytest" -q scripts/tests | tee -a "$log"

  step "load test: locustfile, report generator, sweep logic, the main job end to end (real Locust, vegeta, service, model server)"
  PYTHONPATH="$root/loadtest/src" MPLBACKEND=Agg CELSIUS_SERVER_BINARY="$root/build/release/celsius-server" \
    "$bin/pytest" -q loadtest/tests | tee -a "$log"
}

stage_charts() {
  cd "$root"
  step "tools (helm, kubeconform, kube-score, actionlint; go install, pinned)"
  wait_tools
  local tools
  tools="$("$root/scripts/install-tools.sh")"
  step "Helm charts: lint, rendered manifests, schema, kubeconform, kube-score"
  CELSIUS_TOOLS_BIN="$tools" "$bin/pytest" -q deploy/tests/test_charts.py | tee -a "$log"
  step "GitHub workflow (actionlint)"
  "$tools/actionlint" -shellcheck= .github/workflows/*.yml
  echo "clean"
}

stage_images() {
  cd "$root"
  step "images: hadolint and docker build"
  "$root/scripts/build-images.sh"
  step "images: containers run for real (service, model server, model, loadtest, compose)"
  "$bin/pytest" -q deploy/tests/test_images.py | tee -a "$log"
}

stage_cluster() {
  cd "$root"
  wait_tools  # cluster.sh installs helm too: never two install-tools.sh runs at once
  local started=$SECONDS version
  version="$(sed -nE 's/^project\(celsius VERSION ([0-9.]+).*/\1/p' "$root/CMakeLists.txt")"
  step "cluster: Kubernetes v1.34 binaries, metrics-server, CoreDNS, Helm (built once per machine, cached)"
  if [[ -n "$cluster_build_pid" ]]; then
    local code=0
    wait "$cluster_build_pid" || code=$?
    cluster_build_pid=""
    cat "$log.cluster-build"
    ((code == 0)) || { echo "the background cluster build failed ($code)" >&2; exit 1; }
  fi
  "$root/scripts/cluster.sh" build
  echo "build: $((SECONDS - started)) s"
  step "cluster: the project's images (docker build; cached layers)"
  "$root/scripts/build-images.sh" >/dev/null
  step "cluster: up (a network namespace as the node), images imported"
  cluster_started=1
  "$root/scripts/cluster.sh" up
  "$root/scripts/cluster.sh" load-images "celsius/server:$version" "celsius/server:dev" \
    "celsius/model-server:$version" "celsius/model:$version" "celsius/loadtest:$version"
  step "cluster: the cluster, both charts on it, the main job on it (scripts/run.sh --cluster), down twice"
  (cd deploy/tests && "$bin/pytest" -q -s -rxX test_cluster_infra.py test_cluster_charts.py test_cluster_run.py \
    test_cluster_down.py) | tee -a "$log"
  cluster_started=0
  echo "cluster stage: $((SECONDS - started)) s"
}

for stage in "${stages[@]}"; do
  case "$stage" in
    cpp|python|charts|images|cluster) "stage_$stage" ;;
    *) echo "unknown stage $stage (cpp, python, charts, images, cluster)" >&2; exit 2 ;;
  esac
done

total() { local t=0 n; while read -r n; do t=$((t + n)); done; echo "$t"; }
# (a subset of stages may have run no ctest or no pytest: grep finding nothing is fine)
ctest_total=$({ grep -hoE 'out of [0-9]+' "$log" || true; } | { grep -oE '[0-9]+' || true; } | total)
pytest_passed=$({ grep -hoE '^[0-9]+ passed' "$log" || true; } | { grep -oE '^[0-9]+' || true; } | total)
# ctest and pytest counts, plus the fuzz run as one test.
printf '\nsummary: %d passed, 0 failed (%d s)\n' "$((ctest_total + pytest_passed + fuzz_runs))" "$SECONDS"
