#!/usr/bin/env bash
# What the TensorFlow path costs, measured in one run with wrk on this machine, with request
# coalescing off and on:
#   native     POST /convert                                   (the reference)
#   grpc       POST /convert/model over gRPC, coalescing off   (--model-batch-max-values 0)
#   grpc+co    POST /convert/model over gRPC, coalescing on
#   rest       POST /convert/model over REST, coalescing off
#   rest+co    POST /convert/model over REST, coalescing on
#   direct     POST :predict straight to the model server's REST API, same value
# One value per request, 64 connections. The services (one event loop each) run on CPU 1, the
# model server and wrk on CPU 0, so a service has a core to itself. For each target it prints
# req/s, p50/p99 (us), non-2xx answers, the CPU microseconds per request spent by the service
# and by the model server (from /proc), and the values per Predict call (from the service's
# /metrics); then each model row against native: throughput, service CPU per request, p99.
# Rounds run every target in turn, so drift on a noisy machine hits all of them; each figure
# is the median over the rounds.
#
# Usage: bench/model-bench.sh [--duration 10] [--rounds 3] [--connections 64] [--model-server PATH]
#          [--batch-max-values N] [--batch-timeout-us N] [--batch-max-inflight N] [--targets LIST]
#          [--binary PATH]
#   The --batch-* values configure the "+co" services (default: the service's own defaults
#   when coalescing is on). The model server is PATH, else tensorflow_model_server when on
#   PATH, else build/release/celsius-model-server (built when missing); all take the same
#   flags. --targets measures only some targets (comma-separated names from the list above;
#   native is always measured);
#   --binary runs another build of celsius-server (default build/release/celsius-server).
# Needs: wrk, taskset, curl, a release build, the project's .venv (scripts/python-env.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
server_dir="$(dirname "$here")"
repo="$(dirname "$server_dir")"
duration=10 rounds=3 connections=64 model_server_path="" only="" binary="$repo/build/release/celsius-server" batch_values=256 batch_timeout=0 batch_inflight=1
while (($#)); do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --model-server) model_server_path="$2"; shift 2 ;;
    --batch-max-values) batch_values="$2"; shift 2 ;;
    --batch-timeout-us) batch_timeout="$2"; shift 2 ;;
    --batch-max-inflight) batch_inflight="$2"; shift 2 ;;
    --targets) only="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
for tool in wrk taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run scripts/install-deps.sh bench" >&2; exit 1; }
done
[[ -x "$binary" && -x "$repo/build/release/celsius-model-server" ]] || (cd "$repo" && cmake --preset release >/dev/null && cmake --build --preset release >/dev/null)
python="${CELSIUS_PYTHON:-$repo/.venv/bin/python}"

work="$(mktemp -d)"
# shellcheck source=processes.sh
source "$here/processes.sh"  # spawn/run: every process started here is stopped on every exit path
on_exit() { rm -rf "$work"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 600); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }

# Model: exported from source, served on CPU 0.
PYTHONPATH="$repo/model/src" TF_CPP_MIN_LOG_LEVEL=2 run "$python" -m celsius_model export --output "$work/f2c" >/dev/null
grpc_port="$(free_port)" rest_port="$(free_port)"
if [[ -n "$model_server_path" ]]; then
  model_cmd=("$model_server_path") model_kind="$model_server_path"
elif command -v tensorflow_model_server >/dev/null; then
  model_cmd=(tensorflow_model_server) model_kind="tensorflow_model_server"
else
  model_cmd=(env TF_CPP_MIN_LOG_LEVEL=2 "$repo/build/release/celsius-model-server" --celsius_bind_address=127.0.0.1)
  model_kind="celsius-model-server (C++, TensorFlow's C API)"
fi
spawn taskset -c 0 "${model_cmd[@]}" --port "$grpc_port" --rest_api_port "$rest_port" --model_name f2c \
  --model_base_path "$work/f2c" >"$work/model.log" 2>&1
model_pid=$spawned
wait_for "http://127.0.0.1:$rest_port/v1/models/f2c"

# Services on CPU 1, one event loop each, request logs off. Started from this shell (not a
# subshell), so their PIDs are recorded where the exit trap sees them.
start_service() {  # URL, then extra flags; sets service_port and service_pid
  local url="$1"
  shift
  service_port="$(free_port)"
  spawn taskset -c 1 "$binary" --host 127.0.0.1 --port "$service_port" --threads 1 --log-level warn \
    --model-server "$url" "$@" >"$work/service-$service_port.log" 2>&1
  service_pid=$spawned
}
coalescing=(--model-batch-max-values "$batch_values" --model-batch-timeout-us "$batch_timeout"
  --model-batch-max-inflight "$batch_inflight")
start_service "grpc://127.0.0.1:$grpc_port" --model-batch-max-values 0; grpc_service=$service_port grpc_pid=$service_pid
start_service "grpc://127.0.0.1:$grpc_port" "${coalescing[@]}"; grpc_co_service=$service_port grpc_co_pid=$service_pid
start_service "http://127.0.0.1:$rest_port" --model-batch-max-values 0; rest_service=$service_port rest_pid=$service_pid
start_service "http://127.0.0.1:$rest_port" "${coalescing[@]}"; rest_co_service=$service_port rest_co_pid=$service_pid
# Each service up, and the model AVAILABLE as it sees it (/readyz reports it, never waits for it).
for p in "$grpc_service" "$grpc_co_service" "$rest_service" "$rest_co_service"; do
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$p/readyz" 2>/dev/null | grep -q '"available":true' && break
    sleep 0.1
  done
done

cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
# "sum count" of celsius_model_predict_values on a service (0 0 without a model server).
predict_values() {
  curl -sf "http://127.0.0.1:$1/metrics" |
    awk '/^celsius_model_predict_values_sum /{s=$2} /^celsius_model_predict_values_count /{c=$2} END{print s+0, c+0}'
}

# One wrk run; writes "req_per_s p50_us p99_us errors service_cpu_us model_cpu_us values_per_call"
# to $work/row (CPU per request). Not in a command substitution: that subshell would hide
# wrk's PID from the exit trap.
measure() {
  local url="$1" body="$2" service_pid="$3" service_port="$4"
  local s0 m0 s1 m1 v0 v1
  s0="$(cpu_seconds "$service_pid")"; m0="$(cpu_seconds "$model_pid")"; v0="$(predict_values "$service_port")"
  CELSIUS_BENCH_BODY="$body" run taskset -c 0 wrk -t1 -c"$connections" -d"${duration}s" --latency \
    -s "$here/post_convert.lua" "$url" >"$work/wrk.out"
  s1="$(cpu_seconds "$service_pid")"; m1="$(cpu_seconds "$model_pid")"; v1="$(predict_values "$service_port")"
  python3 - "$work/wrk.out" "$s0" "$s1" "$m0" "$m1" $v0 $v1 >"$work/row" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
s0, s1, m0, m1, vs0, vc0, vs1, vc1 = map(float, sys.argv[2:10])
def us(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
total = int(re.search(r"(\d+) requests in", text).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = us(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = us(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errors = int(bad.group(1)) if bad else 0
per_request = lambda a, b: (b - a) * 1e6 / max(total, 1)  # CPU microseconds per request
calls = vc1 - vc0
values_per_call = (vs1 - vs0) / calls if calls > 0 else 0
print(f"{rps:.0f} {p50:.0f} {p99:.0f} {errors} {per_request(s0, s1):.1f} {per_request(m0, m1):.1f} "
      f"{values_per_call:.1f}")
PY
}

single='{"fahrenheit": 98.6}'
direct='{"instances": [98.6]}'
targets=(
  "native|http://127.0.0.1:$grpc_service/convert|$single|$grpc_pid|$grpc_service"
  "grpc|http://127.0.0.1:$grpc_service/convert/model|$single|$grpc_pid|$grpc_service"
  "grpc+co|http://127.0.0.1:$grpc_co_service/convert/model|$single|$grpc_co_pid|$grpc_co_service"
  "rest|http://127.0.0.1:$rest_service/convert/model|$single|$rest_pid|$rest_service"
  "rest+co|http://127.0.0.1:$rest_co_service/convert/model|$single|$rest_co_pid|$rest_co_service"
  "direct|http://127.0.0.1:$rest_port/v1/models/f2c:predict|$direct|$grpc_pid|$grpc_service"
)
if [[ -n "$only" ]]; then
  chosen=()
  for t in "${targets[@]}"; do
    name="${t%%|*}"
    [[ "$name" == native || ",$only," == *",$name,"* ]] && chosen+=("$t")
  done
  targets=("${chosen[@]}")
fi
saved="$duration"; duration=2
for t in "${targets[@]}"; do IFS='|' read -r _ url body pid port <<<"$t"; measure "$url" "$body" "$pid" "$port"; done
duration="$saved"
: >"$work/results"
for round in $(seq "$rounds"); do
  for t in "${targets[@]}"; do
    IFS='|' read -r name url body pid port <<<"$t"
    measure "$url" "$body" "$pid" "$port"
    line="$name $(cat "$work/row")"
    echo "$line" >>"$work/results"
    echo "  round $round/$rounds: $line" >&2
  done
done

python3 - "$work/results" "$duration" "$connections" "$model_kind" "$batch_values" "$batch_timeout" \
  "$batch_inflight" "$rounds" <<'PY'
import statistics, sys
runs = {}
for r in (line.split() for line in open(sys.argv[1])):
    if r:
        runs.setdefault(r[0], []).append([float(x) for x in r[1:]])
# Median of each column over the rounds.
rows = {name: [f"{statistics.median(col):g}" for col in zip(*values)] for name, values in runs.items()}
duration, connections, model_kind, values, timeout_us, inflight, rounds = sys.argv[2:9]
print(f"medians of {rounds} rounds of wrk -t1 -c{connections} -d{duration}s per target, one value per request; "
      f"services (--threads 1) on CPU 1; "
      f"model server ({model_kind}) and wrk on CPU 0; +co: --model-batch-max-values {values} "
      f"--model-batch-timeout-us {timeout_us} --model-batch-max-inflight {inflight}")
print(f"{'target':8} {'req/s':>9} {'p50 us':>8} {'p99 us':>8} {'non-2xx':>8} {'service CPU us/req':>19} "
      f"{'model CPU us/req':>17} {'values/call':>12}")
for name in ("native", "grpc", "grpc+co", "rest", "rest+co", "direct"):
    if name not in rows:
        continue
    rps, p50, p99, errors, s_cpu, m_cpu, per_call = rows[name]
    service_cpu = "-" if name == "direct" else s_cpu
    calls = "-" if name in ("native", "direct") else per_call
    print(f"{name:8} {float(rps):>9.0f} {float(p50):>8.0f} {float(p99):>8.0f} {float(errors):>8.0f} {service_cpu:>19} "
          f"{m_cpu:>17} {calls:>12}")
n_rps, n_p99, n_cpu = float(rows["native"][0]), float(rows["native"][2]), float(rows["native"][4])
budget = 2 * n_p99 + float(timeout_us)
print(f"\nagainst native (goals for +co: throughput >= 0.50x, service CPU per request <= 3x, "
      f"p99 <= 2 x native p99 + batch timeout = {budget:.0f} us)")
print(f"{'target':8} {'throughput':>11} {'service CPU':>12} {'p99':>14}")
for name in ("grpc", "grpc+co", "rest", "rest+co"):
    if name not in rows:
        continue
    rps, _, p99, _, s_cpu, _, _ = rows[name]
    verdict = "" if not name.endswith("+co") else (
        "  (" + ", ".join(f"{label} {'met' if ok else 'NOT met'}" for label, ok in (
            ("throughput", float(rps) / n_rps >= 0.5), ("CPU", float(s_cpu) / n_cpu <= 3),
            ("p99", float(p99) <= budget))) + ")")
    print(f"{name:8} {float(rps) / n_rps:>10.2f}x {float(s_cpu) / n_cpu:>11.1f}x {float(p99):>10.0f} us{verdict}")
PY
