#!/usr/bin/env bash
# What the model server costs per request, against the bare TensorFlow run, in one run:
#   tf_run       celsius-tf-run-bench: TF_SessionRun on the loaded SavedModel, one value, with
#                TensorFlow's default session threads (the reference), and again in the caller's
#                thread (inter_op -1, for information)
#   grpc, rest   Predict straight to celsius-model-server, one value per request, 8 callers
#   grpc/rest batched   the same with --enable_batching and 64 callers
# Each server row runs once per session setting (TF Serving's flags, so the real
# tensorflow_model_server takes the same ones):
#   defaults       no session flags: TensorFlow's inter-op and intra-op pools (one thread per CPU each)
#   caller_thread  --tensorflow_intra_op_parallelism 1 --tensorflow_inter_op_parallelism -1: a
#                  negative inter_op_parallelism_threads (tensorflow.ConfigProto) runs each
#                  TF_SessionRun in the thread that calls it, the front end's, with no hand-off
# The model server (and the microbenchmark) run pinned to CPU 0, the load generators
# (celsius-grpc-load, wrk) to CPU 1. CPU per request is the model server's user+system CPU time
# (/proc, every thread) over the requests answered; "x tf_run" divides it by the reference; "cs/req"
# is the model server's context switches (voluntary + involuntary, every thread) per request.
# Goals (issue 12): unbatched at most 3x, batched with 64 callers at most 1x.
#
# --baseline BINARY runs every setting again with another celsius-model-server build (rows
# "before/<setting>"), e.g. one built from the main branch: before and after in one run.
#
# Usage: model_server/bench/model-server-bench.sh [--duration 10] [--settings defaults,caller_thread]
#                                                 [--baseline BINARY]
# Needs: wrk, taskset, curl, a release build, the project's .venv (scripts/python-env.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
duration=10
settings="defaults,caller_thread"
baseline=""
while (($#)); do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --settings) settings="$2"; shift 2 ;;
    --baseline) baseline="$2"; shift 2 ;;
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
# Context switches of every thread of a process (threads that ended are not counted).
context_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}'; }
session_flags() {  # setting name -> the model server's flags
  case "$1" in
    defaults) ;;
    caller_thread) echo "--tensorflow_intra_op_parallelism 1 --tensorflow_inter_op_parallelism -1" ;;
    *) echo "unknown setting $1" >&2; exit 2 ;;
  esac
}

PYTHONPATH="$repo/model/src" TF_CPP_MIN_LOG_LEVEL=2 "$python" -m celsius_model export --output "$work/f2c" >/dev/null
export TF_CPP_MIN_LOG_LEVEL=2

echo "reference: TF_SessionRun, $duration s per batch size, CPU 0" >&2
taskset -c 0 "$bin/celsius-tf-run-bench" --model_dir "$work/f2c/1" --seconds "$duration" --batch_sizes 1,64 \
  >"$work/tf_run.out" 2>/dev/null
cat "$work/tf_run.out" >&2
tf_cpu="$(sed -nE 's/^batch_size=1 .* cpu_us_per_run=([0-9.]+).*/\1/p' "$work/tf_run.out")"
tf_wall="$(sed -nE 's/^batch_size=1 .* wall_us_per_run=([0-9.]+).*/\1/p' "$work/tf_run.out")"
taskset -c 0 "$bin/celsius-tf-run-bench" --model_dir "$work/f2c/1" --seconds "$duration" --batch_sizes 1 \
  --intra_op_parallelism 1 --inter_op_parallelism -1 >"$work/tf_run_caller.out" 2>/dev/null
cat "$work/tf_run_caller.out" >&2
tf_caller_cpu="$(sed -nE 's/^batch_size=1 .* cpu_us_per_run=([0-9.]+).*/\1/p' "$work/tf_run_caller.out")"

printf 'max_batch_size { value: 256 }\nbatch_timeout_micros { value: 0 }\nmax_enqueued_batches { value: 1000000 }\nnum_batch_threads { value: 1 }\n' \
  >"$work/batching.config"

server_binary="$bin/celsius-model-server"
start_model() {  # [extra flags...]; sets model_pid grpc_port rest_port
  "$server_binary" --port 0 --rest_api_port 0 --celsius_free_ports --celsius_bind_address 127.0.0.1 \
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

# One measurement: prints "requests req_per_s cpu_us_per_request errors context_switches_per_request".
measure() {  # kind(grpc|rest) connections
  local kind="$1" conns="$2" c0 c1 s0 s1 requests errors seconds
  s0="$(context_switches "$model_pid")"
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
  s1="$(context_switches "$model_pid")"
  python3 -c "import sys; r,c0,c1,s,e,s0,s1=sys.argv[1:]; r=int(r); print(r, f'{r/float(s):.0f}', f'{(float(c1)-float(c0))*1e6/max(r,1):.1f}', e or 0, f'{(int(s1)-int(s0))/max(r,1):.2f}')" \
    "$requests" "$c0" "$c1" "$seconds" "${errors:-0}" "$s0" "$s1"
}

: >"$work/results"
: >"$work/batch_sizes"
IFS=, read -ra setting_list <<<"$settings"
runs=()  # interleaved: before/defaults, defaults, before/caller_thread, caller_thread
for setting in "${setting_list[@]}"; do
  [[ -z "$baseline" ]] || runs+=("before/$setting")
  runs+=("$setting")
done
for label in "${runs[@]}"; do
  setting="${label#before/}"
  server_binary="$bin/celsius-model-server"
  [[ "$label" != before/* ]] || server_binary="$baseline"
  read -ra flags <<<"$(session_flags "$setting")"
  start_model "${flags[@]}"
  measure grpc 2 >/dev/null; measure rest 2 >/dev/null  # warm-up
  for kind in grpc rest; do echo "$label $kind $(measure "$kind" 8)" >>"$work/results"; tail -1 "$work/results" >&2; done
  stop_model
  start_model "${flags[@]}" --enable_batching --batching_parameters_file "$work/batching.config" \
    --monitoring_config_file <(printf 'prometheus_config { enable: true }\n')
  measure grpc 8 >/dev/null
  m0="$(curl -s "http://127.0.0.1:$rest_port/monitoring/prometheus/metrics")"
  for kind in grpc rest; do
    echo "$label $kind-batched $(measure "$kind" 64)" >>"$work/results"; tail -1 "$work/results" >&2
  done
  m1="$(curl -s "http://127.0.0.1:$rest_port/monitoring/prometheus/metrics")"
  stop_model
  python3 - "$label" "$m0" "$m1" >>"$work/batch_sizes" <<'PY'
import re, sys
def metric(text, name):
    m = re.search(re.escape(name) + r" ([0-9.e+]+)", text)
    return float(m.group(1)) if m else 0.0
count = ":tensorflow:serving:batching_session:processed_batch_size_count{}"
total = ":tensorflow:serving:batching_session:processed_batch_size_sum{}"
runs = metric(sys.argv[3], count) - metric(sys.argv[2], count)
values = metric(sys.argv[3], total) - metric(sys.argv[2], total)
if runs:
    print(f"{sys.argv[1]}: batched rows averaged {values / runs:.1f} values per TF_SessionRun ({runs:.0f} runs)")
PY
done

python3 - "$work/results" "$tf_cpu" "$tf_wall" "$tf_caller_cpu" "$duration" <<'PY'
import sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
tf_cpu, tf_wall, tf_caller, duration = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
print(f"model-server-bench.sh --duration {duration}: model server on CPU 0, load (celsius-grpc-load, wrk) on CPU 1")
print(f"reference TF_SessionRun, one value: {tf_cpu:.1f} us CPU per run ({tf_wall:.1f} us wall); "
      f"in the caller's thread (inter_op -1): {tf_caller:.1f} us CPU")
print(f"{'setting':22} {'target':13} {'callers':>7} {'req/s':>8} {'CPU us/req':>11} {'x tf_run':>9} {'cs/req':>7} {'errors':>7}")
callers = {"grpc": 8, "rest": 8, "grpc-batched": 64, "rest-batched": 64}
for setting, name, requests, rps, cpu, errors, switches in rows:
    print(f"{setting:22} {name:13} {callers[name]:>7} {float(rps):>8.0f} {float(cpu):>11.1f} "
          f"{float(cpu) / tf_cpu:>8.2f}x {float(switches):>7.2f} {errors:>7}")
PY
cat "$work/batch_sizes"
