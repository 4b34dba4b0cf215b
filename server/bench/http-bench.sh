#!/usr/bin/env bash
# Throughput and latency of POST /convert against nginx serving a fixed JSON body of the
# same size, measured in the same run on the same machine. The server under test is
# pinned to CPU 0 and wrk to CPU 1, 64 connections. Prints req/s, p50, p99 of each and
# the ratio. Rounds alternate celsius/nginx so drift on a noisy machine hits both.
#
# Usage: bench/http-bench.sh [--duration 10] [--rounds 3] [--connections 64] [--log-level info]
# Needs: wrk, nginx-light, taskset (scripts/install-deps.sh bench), a release build.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
duration=10 rounds=3 connections=64 log_level=info
while (($#)); do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --log-level) log_level="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

for tool in wrk nginx taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run scripts/install-deps.sh bench" >&2; exit 1; }
done
binary="$repo/build/release/celsius-server"
if [[ ! -x "$binary" ]]; then
  (cd "$repo" && cmake --preset release >/dev/null && cmake --build --preset release >/dev/null)
fi
(( $(nproc) >= 2 )) || { echo "needs 2 CPUs (server on one, wrk on the other)" >&2; exit 1; }

work="$(mktemp -d)"
# shellcheck source=processes.sh
source "$here/processes.sh"  # spawn/run: every process started here is stopped on every exit path
on_exit() { rm -rf "$work"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# celsius on CPU 0, one event loop, logs at the requested level into a file.
celsius_port="$(free_port)"
spawn taskset -c 0 "$binary" --host 127.0.0.1 --port "$celsius_port" --threads 1 --log-level "$log_level" \
  >"$work/celsius.log" 2>&1

body='{"fahrenheit": 98.6}'
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$celsius_port/healthz" >/dev/null && break; sleep 0.1; done
sample="$(curl -sf -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$celsius_port/convert")"
app_id="$(curl -sf -D - -o /dev/null "http://127.0.0.1:$celsius_port/" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-app-id"{print $2}')"

# nginx on CPU 0, one worker, answering every request with a body of the same size and
# the same extra headers.
nginx_port="$(free_port)"
escaped="${sample//\\/\\\\}"; escaped="${escaped//\'/\\\'}"
cat >"$work/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
error_log $work/nginx-error.log warn;
pid $work/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/body; proxy_temp_path $work/proxy; fastcgi_temp_path $work/fcgi;
  uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      default_type application/json;
      add_header X-App-Id $app_id;
      add_header X-Request-Id 00000000-0000-4000-8000-000000000000;
      return 200 '$escaped';
    }
  }
}
CONF
spawn taskset -c 0 nginx -c "$work/nginx.conf" -p "$work"
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$nginx_port/" && break; sleep 0.1; done

# One wrk run; writes "req_per_s p50_us p99_us" to $work/row. (Not in a command substitution:
# that subshell would hide wrk's PID from the exit trap.)
run_wrk() {
  CELSIUS_BENCH_BODY="$body" run taskset -c 1 wrk -t1 -c"$connections" -d"${duration}s" --latency \
    -s "$here/post_convert.lua" "http://127.0.0.1:$1/convert" >"$work/wrk.out"
  python3 - "$work/wrk.out" >"$work/row" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def us(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = us(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = us(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", text)
if errors:
    sys.exit("wrk saw errors: " + errors.group(0))
print(f"{rps:.0f} {p50:.0f} {p99:.0f}")
PY
}

# Warm both up, then alternate.
duration_saved="$duration"; duration=2
run_wrk "$celsius_port"; run_wrk "$nginx_port"
duration="$duration_saved"
: >"$work/results"
for round in $(seq "$rounds"); do
  for target in celsius nginx; do
    port_var="${target}_port"
    run_wrk "${!port_var}"
    line="$target $(cat "$work/row")"
    echo "$line" >>"$work/results"
    echo "  round $round/$rounds: $line (req/s p50_us p99_us)" >&2
  done
done

python3 - "$work/results" "$duration" "$rounds" "$connections" "$log_level" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
def med(name, col):
    return statistics.median(float(r[col]) for r in rows if r[0] == name)
c = {k: med("celsius", i) for k, i in (("rps", 1), ("p50", 2), ("p99", 3))}
n = {k: med("nginx", i) for k, i in (("rps", 1), ("p50", 2), ("p99", 3))}
print(f"POST /convert, 64-byte-class JSON, wrk -c{sys.argv[4]} on CPU 1, server on CPU 0, "
      f"{sys.argv[3]} rounds x {sys.argv[2]} s, medians; celsius --threads 1 --log-level {sys.argv[5]}")
print(f"{'':10} {'req/s':>10} {'p50 us':>8} {'p99 us':>8}")
print(f"{'celsius':10} {c['rps']:>10.0f} {c['p50']:>8.0f} {c['p99']:>8.0f}")
print(f"{'nginx':10} {n['rps']:>10.0f} {n['p50']:>8.0f} {n['p99']:>8.0f}")
print(f"ratio celsius/nginx req/s: {c['rps'] / n['rps']:.2f}x")
PY
