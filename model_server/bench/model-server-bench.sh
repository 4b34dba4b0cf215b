#!/usr/bin/env bash
# What the model server costs per request, against the bare TensorFlow run, in one run:
#   tf_run       celsius-tf-run-bench: TF_SessionRun on the loaded SavedModel, one value (the reference)
#   grpc, rest   Predict straight to celsius-model-server, one value per request, 8 callers
#   grpc/rest batched   the same with --enable_batching and 64 callers
# The model server (and the microbenchmark) run pinned to CPU 0, the load generators
# (celsius-grpc-load, wrk) to CPU 1. CPU per request is the model server's user+system CPU time
# (/proc, every thread) over the requests answered; "x tf_run" divides it by the reference.
# Goals (issue 12): unbatched at most 3x, batched with 64 callers at most 1x.
#
# Usage: model_server/bench/model-server-bench.sh [--duration 10]
# Needs: wrk, taskset, curl, a release build, the project's .venv (scripts/python-env.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
duration=10
while (($#)); do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
for tool in wrk taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run scripts/install-deps.sh bench" >&2; exit 1; }
done
bin="$repo/build/release"
for b in celsius-model-server celsius-tf-run-bench celsius-grpc-load; do
  [[ -x "$bin/$b" ]] || (cd "$repo" && cmake --preset release >/dev/null && cmake --build --preset release --target "$b" >/dev/null)
done
python="${CELSIUS_PYTHON:-$repo/.venv/bin/python}"

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM
wait_for() { for _ in $(seq 600); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }

PYTHONPATH="$repo/model/src" TF_CPP_MIN_LOG_LEVEL=2 "$python" -m celsius_model export --output "$work/f2c" >/dev/null
export TF_CPP_MIN_LOG_LEVEL=2

echo "reference: TF_SessionRun, $duration s per batch size, CPU 0" >&2
taskset -c 0 "$bin/celsius-tf-run-bench" --model_dir "$work/f2c/1" --seconds "$duration" --batch_sizes 1,64 \
  >"$work/tf_run.out" 2>/dev/null
cat "$work/tf_run.out" >&2
tf_cpu="$(sed -nE 's/^batch_size=1 .* cpu_us_per_run=([0-9.]+).*/\1/p' "$work/tf_run.out")"
tf_wall="$(sed -nE 's/^batch_size=1 .* wall_us_per_run=([0-9.]+).*/\1/p' "$work/tf_run.out")"

printf 'max_batch_size { value: 256 }\nbatch_timeout_micros { value: 0 }\nmax_enqueued_batches { value: 1000000 }\nnum_batch_threads { value: 1 }\n' \
  >"$work/batching.config"

start_model() {  # [extra flags...]; sets model_pid grpc_port rest_port
  "$bin/celsius-model-server" --port 0 --rest_api_port 0 --celsius_free_ports --celsius_bind_address 127.0.0.1 \
    --model_name f2c --model_base_path "$work/f2c" --rest_api_num_threads 4 "$@" >"$work/model.log" 2>&1 &
  model_pid=$!; pids+=("$model_pid")
  taskset -pc 0 "$model_pid" >/dev/null
  for _ in $(seq 1200); do grep -q "Exporting HTTP/REST API" "$work/model.log" && break; sleep 0.1; done
  grpc_port="$(sed -nE 's/.*Running gRPC ModelServer at [0-9.]+:([0-9]+).*/\1/p' "$work/model.log")"
  rest_port="$(sed -nE 's/.*Exporting HTTP\/REST API at:localhost:([0-9]+).*/\1/p' "$work/model.log")"
  wait_for "http://127.0.0.1:$rest_port/v1/models/f2c"
  # Threads started later inherit the affinity; TensorFlow's pools exist from the load on.
  for t in /proc/"$model_pid"/task/*; do taskset -pc 0 "${t##*/}" >/dev/null 2>&1 || true; done
}
stop_model() { kill -TERM "$model_pid"; wait "$model_pid" || true; }

# One measurement: prints "requests req_per_s cpu_us_per_request errors".
measure() {  # kind(grpc|rest) connections
  local kind="$1" conns="$2" c0 c1 requests errors seconds
  c0="$(cpu_seconds "$model_pid")"
  if [[ "$kind" == grpc ]]; then
    taskset -c 1 "$bin/celsius-grpc-load" --target "127.0.0.1:$grpc_port" --concurrency "$conns" \
      --seconds "$duration" >"$work/load.out" || true
    requests="$(sed -nE 's/.*requests=([0-9]+).*/\1/p' "$work/load.out")"
    errors="$(sed -nE 's/.*errors=([0-9]+).*/\1/p' "$work/load.out")"
    seconds="$(sed -nE 's/.*seconds=([0-9.]+).*/\1/p' "$work/load.out")"
  else
    CELSIUS_BENCH_BODY='{"instances": [98.6]}' taskset -c 1 wrk -t1 -c"$conns" -d"${duration}s" \
      -s "$repo/server/bench/post_convert.lua" "http://127.0.0.1:$rest_port/v1/models/f2c:predict" >"$work/load.out"
    requests="$(sed -nE 's/^ *([0-9]+) requests in .*/\1/p' "$work/load.out")"
    errors="$(sed -nE 's/.*Non-2xx or 3xx responses: ([0-9]+).*/\1/p' "$work/load.out")"
    seconds="$duration"
  fi
  c1="$(cpu_seconds "$model_pid")"
  python3 -c "import sys; r,c0,c1,s,e=sys.argv[1:]; r=int(r); print(r, f'{r/float(s):.0f}', f'{(float(c1)-float(c0))*1e6/max(r,1):.1f}', e or 0)" \
    "$requests" "$c0" "$c1" "$seconds" "${errors:-0}"
}

: >"$work/results"
start_model
measure grpc 2 >/dev/null; measure rest 2 >/dev/null  # warm-up
for kind in grpc rest; do echo "$kind $(measure "$kind" 8)" >>"$work/results"; tail -1 "$work/results" >&2; done
stop_model
start_model --enable_batching --batching_parameters_file "$work/batching.config" \
  --monitoring_config_file <(printf 'prometheus_config { enable: true }\n')
measure grpc 8 >/dev/null
for kind in grpc rest; do echo "$kind-batched $(measure "$kind" 64)" >>"$work/results"; tail -1 "$work/results" >&2; done
metrics="$(curl -s "http://127.0.0.1:$rest_port/monitoring/prometheus/metrics")"
stop_model

python3 - "$work/results" "$tf_cpu" "$tf_wall" "$duration" "$metrics" <<'PY'
import re, sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
tf_cpu, tf_wall, duration, metrics = float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
def metric(name):
    m = re.search(re.escape(name) + r" ([0-9.e+]+)", metrics)
    return float(m.group(1)) if m else 0.0
batches = metric(":tensorflow:serving:batching_session:processed_batch_size_count{}")
rows_run = metric(":tensorflow:serving:batching_session:processed_batch_size_sum{}")
print(f"model-server-bench.sh --duration {duration}: model server on CPU 0, load (celsius-grpc-load, wrk) on CPU 1")
print(f"reference TF_SessionRun, one value: {tf_cpu:.1f} us CPU per run ({tf_wall:.1f} us wall)")
print(f"{'target':14} {'callers':>7} {'req/s':>8} {'CPU us/req':>11} {'x tf_run':>9} {'errors':>7}")
callers = {"grpc": 8, "rest": 8, "grpc-batched": 64, "rest-batched": 64}
for name, requests, rps, cpu, errors in rows:
    print(f"{name:14} {callers[name]:>7} {float(rps):>8.0f} {float(cpu):>11.1f} {float(cpu) / tf_cpu:>8.2f}x {errors:>7}")
if batches:
    print(f"batched runs: {rows_run / batches:.1f} values per TF_SessionRun on average ({batches:.0f} runs)")
PY
