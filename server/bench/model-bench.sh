#!/usr/bin/env bash
# What the TensorFlow path costs, measured in one run with wrk on this machine:
#   native   POST /convert                      (the reference)
#   grpc     POST /convert/model, service -> model server over gRPC
#   rest     POST /convert/model, service -> model server over REST
#   direct   POST :predict straight to the model server's REST API, same value
# The model server is pinned to CPU 0; the service and wrk share CPU 1. For each target it
# prints req/s, p50/p99 (us), errors, and the CPU seconds per 1000 requests spent by the
# service and by the model server (from /proc), which says where the time goes.
#
# Usage: bench/model-bench.sh [--duration 10] [--connections 8]
#   The model server is tensorflow_model_server when it is on PATH, else the local
#   stand-in celsius-model-server (C++, build/release/); both take the same flags.
#   What the model server itself costs per request: model_server/bench/model-server-bench.sh.
# Needs: wrk, taskset, curl, a release build, the project's .venv (scripts/python-env.sh, for the export).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
server_dir="$(dirname "$here")"
repo="$(dirname "$server_dir")"
duration=10 connections=8
while (($#)); do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
for tool in wrk taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run scripts/install-deps.sh bench" >&2; exit 1; }
done
binary="$repo/build/release/celsius-server"
model_binary="$repo/build/release/celsius-model-server"
[[ -x "$binary" && -x "$model_binary" ]] || (cd "$repo" && cmake --preset release >/dev/null && cmake --build --preset release >/dev/null)
python="${CELSIUS_PYTHON:-$repo/.venv/bin/python}"

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 600); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }

# Model: exported from source, served on CPU 0.
PYTHONPATH="$repo/model/src" TF_CPP_MIN_LOG_LEVEL=2 "$python" -m celsius_model export --output "$work/f2c" >/dev/null
grpc_port="$(free_port)" rest_port="$(free_port)"
if command -v tensorflow_model_server >/dev/null; then
  model_cmd=(tensorflow_model_server) model_kind="tensorflow_model_server"
else
  model_cmd=(env TF_CPP_MIN_LOG_LEVEL=2 "$model_binary" --celsius_bind_address=127.0.0.1)
  model_kind="stand-in celsius-model-server (C++, TensorFlow's C API)"
fi
taskset -c 0 "${model_cmd[@]}" --port "$grpc_port" --rest_api_port "$rest_port" --model_name f2c \
  --model_base_path "$work/f2c" >"$work/model.log" 2>&1 &
model_pid=$!; pids+=("$model_pid")
wait_for "http://127.0.0.1:$rest_port/v1/models/f2c"

# Two services on CPU 1 (one per protocol), one event loop each, request logs off.
start_service() {
  local port; port="$(free_port)"
  taskset -c 1 "$binary" --host 127.0.0.1 --port "$port" --threads 1 --log-level warn --model-server "$1" \
    >"$work/service-$port.log" 2>&1 &
  pids+=($!)
  echo "$port $!"
}
read -r grpc_service grpc_service_pid < <(start_service "grpc://127.0.0.1:$grpc_port")
read -r rest_service rest_service_pid < <(start_service "http://127.0.0.1:$rest_port")
for p in "$grpc_service" "$rest_service"; do
  for _ in $(seq 300); do curl -sf -o /dev/null "http://127.0.0.1:$p/readyz" && break; sleep 0.1; done
done

cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }

# One wrk run: prints "req_per_s p50_us p99_us errors service_cpu_ms_per_1k model_cpu_ms_per_1k".
run() {
  local url="$1" body="$2" service_pid="$3"
  local s0 m0 s1 m1
  s0="$(cpu_seconds "$service_pid")"; m0="$(cpu_seconds "$model_pid")"
  CELSIUS_BENCH_BODY="$body" taskset -c 1 wrk -t1 -c"$connections" -d"${duration}s" --latency \
    -s "$here/post_convert.lua" "$url" >"$work/wrk.out"
  s1="$(cpu_seconds "$service_pid")"; m1="$(cpu_seconds "$model_pid")"
  python3 - "$work/wrk.out" "$s0" "$s1" "$m0" "$m1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
s0, s1, m0, m1 = map(float, sys.argv[2:6])
def us(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
total = int(re.search(r"(\d+) requests in", text).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = us(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = us(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errors = int(bad.group(1)) if bad else 0
per_k = lambda a, b: (b - a) * 1e6 / max(total, 1)  # CPU ms per 1000 requests
print(f"{rps:.0f} {p50:.0f} {p99:.0f} {errors} {per_k(s0, s1):.1f} {per_k(m0, m1):.1f}")
PY
}

single='{"fahrenheit": 98.6}'
direct='{"instances": [98.6]}'
targets=(
  "native|http://127.0.0.1:$grpc_service/convert|$single|$grpc_service_pid"
  "grpc|http://127.0.0.1:$grpc_service/convert/model|$single|$grpc_service_pid"
  "rest|http://127.0.0.1:$rest_service/convert/model|$single|$rest_service_pid"
  "direct|http://127.0.0.1:$rest_port/v1/models/f2c:predict|$direct|$grpc_service_pid"
)
saved="$duration"; duration=2
for t in "${targets[@]}"; do IFS='|' read -r _ url body pid <<<"$t"; run "$url" "$body" "$pid" >/dev/null; done
duration="$saved"
: >"$work/results"
for t in "${targets[@]}"; do
  IFS='|' read -r name url body pid <<<"$t"
  line="$name $(run "$url" "$body" "$pid")"
  echo "$line" >>"$work/results"
  echo "  $line" >&2
done

python3 - "$work/results" "$duration" "$connections" "$model_kind" <<'PY'
import sys
rows = {r[0]: r[1:] for r in (line.split() for line in open(sys.argv[1])) if r}
print(f"wrk -t1 -c{sys.argv[3]} -d{sys.argv[2]}s, one value per request; model server: {sys.argv[4]} on CPU 0; "
      f"service (--threads 1) and wrk on CPU 1")
print(f"{'target':8} {'req/s':>9} {'p50 us':>8} {'p99 us':>8} {'errors':>7} {'service CPU ms/1k':>18} "
      f"{'model CPU ms/1k':>16} {'req/s vs direct':>16}")
direct = float(rows["direct"][0])
for name in ("native", "grpc", "rest", "direct"):
    rps, p50, p99, errors, s_cpu, m_cpu = rows[name]
    service_cpu = "-" if name == "direct" else s_cpu
    print(f"{name:8} {float(rps):>9.0f} {float(p50):>8.0f} {float(p99):>8.0f} {errors:>7} {service_cpu:>18} "
          f"{m_cpu:>16} {float(rps) / direct:>15.2f}x")
PY
