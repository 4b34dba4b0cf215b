#!/usr/bin/env bash
# The main job. Today: builds the service, starts it on loopback, shows the API answering
# (single, batch, query, an error, metrics), runs the `native` Locust scenario, and writes
# results/<run-id>/ (Locust's CSV files and HTML report, run.json, report.md with charts).
# The `model` and `mixed` scenarios and the wrk ceilings join once /convert/model exists.
#   --duration D  Locust run time (default 60s)      --users N  Locust users (default 16)
#   --no-load     skip the load test                 --serve    keep serving until Ctrl-C
#   --port N      listen port (default 8000, or CELSIUS_PORT)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
serve=0 load=1 duration=60s users=16
port="${CELSIUS_PORT:-8000}"
while (($#)); do
  case "$1" in
    --serve) serve=1; shift ;;
    --no-load) load=0; shift ;;
    --duration) duration="$2"; shift 2 ;;
    --users) users="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

"$root/scripts/install-deps.sh" cpp
cd "$root/server"
binary=build/release/celsius-server
if [[ ! -x "$binary" ]] || [[ -n "$(find src api CMakeLists.txt -newer "$binary" -print -quit)" ]]; then
  echo "==> building the service (release preset)"
  cmake --preset release >/dev/null
  cmake --build --preset release --target celsius-server
fi

log="$(mktemp)"
"$binary" --host 127.0.0.1 --port "$port" >"$log" 2>&1 &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; rm -f "$log"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.05
done
base="http://127.0.0.1:$port"
show() { echo; echo "\$ $*"; "$@"; echo; }
echo "==> celsius is listening on $base"
show curl -s "$base/"
show curl -s -H 'Content-Type: application/json' -d '{"fahrenheit": 98.6}' "$base/convert"
show curl -s -H 'Content-Type: application/json' -d '{"fahrenheit": [32, 212, -40, -459.67]}' "$base/convert"
show curl -s "$base/convert?fahrenheit=451"
show curl -s -H 'Content-Type: application/json' -d '{"fahrenheit": -500}' "$base/convert"
echo; echo "\$ curl -s $base/metrics | grep celsius_http_requests_total"
curl -s "$base/metrics" | grep '^celsius_http_requests_total'
echo; echo "API docs: $base/docs (OpenAPI: $base/openapi.json)"

if ((load)); then
  bin="$("$root/scripts/python-env.sh" "$root/loadtest/requirements.txt")"
  run_id="$(date -u +%Y%m%dT%H%M%SZ)"
  out="$root/results/$run_id"
  mkdir -p "$out"
  echo; echo "==> Locust scenario 'native': $users users, $duration -> results/$run_id/"
  (cd "$root/loadtest" && "$bin/locust" --config locust.conf --host "$base" --tags native \
    --users "$users" --spawn-rate "$users" --run-time "$duration" \
    --csv "$out/native" --csv-full-history --html "$out/native.html") || echo "(Locust reported failed requests)"
  python3 - "$out/run.json" "$users" "$duration" "$base" "$bin" <<'PY'
import json, os, platform, subprocess, sys
out, users, duration, base, venv_bin = sys.argv[1:]
def cmd(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return ""
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
service = json.loads(cmd("curl", "-s", base + "/") or "{}")
json.dump({
    "scenarios": ["native"], "users": int(users), "spawn_rate": int(users), "duration": duration,
    "git_commit": cmd("git", "rev-parse", "HEAD"), "machine": {"cpu": cpu, "cores": os.cpu_count()},
    "service_version": service.get("version"), "app_id": service.get("app_id"),
    "locust": cmd(os.path.join(venv_bin, "locust"), "--version").split(" from ")[0],
    "model_server": None,
}, open(out, "w"), indent=2)
PY
  PYTHONPATH="$root/loadtest/src" MPLBACKEND=Agg "$bin/python" -m celsius_loadtest report "$out" >/dev/null
  echo; sed -n '/^## Results/,/^## TensorFlow/p' "$out/report.md" | sed '$d'
  echo "report: results/$run_id/report.md"
fi
if ((serve)); then
  echo "==> serving until Ctrl-C (logs: $log)"
  wait "$pid"
fi
