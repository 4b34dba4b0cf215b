#!/usr/bin/env bash
# The main job. Today: builds the service, starts it on loopback, shows the API answering
# (single, batch, query, an error, metrics), then stops it. Later issues extend this to the
# whole local stack (model server), the Locust load test and the report.
#   --serve   keep the service running after the demo until Ctrl-C
#   --port N  listen port (default 8000, or CELSIUS_PORT)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
serve=0
port="${CELSIUS_PORT:-8000}"
while (($#)); do
  case "$1" in
    --serve) serve=1; shift ;;
    --port) port="$2"; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
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
if ((serve)); then
  echo "==> serving until Ctrl-C (logs: $log)"
  wait "$pid"
fi
