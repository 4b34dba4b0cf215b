"""wrk's text output -> numbers, in one place (standard library only, so the benchmark scripts'
system python3 can run it too):

  python3 -m celsius_loadtest.wrk WRK_OUTPUT_FILE     # prints the parsed figures as JSON

wrk 4.x (`wrk --latency`) prints latencies as `<number><unit>` with unit us, ms, s (m and h
for minutes and hours in very slow runs), a `Latency Distribution` block of 50/75/90/99 %, the total
as `N requests in Ts`, `Requests/sec: R`, and, only when there were any, `Non-2xx or 3xx
responses: N` and `Socket errors: connect C, read R, write W, timeout T`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def duration_us(text: str) -> float:
    """'87.00us', '1.25ms', '2.00s', '1.50m' -> microseconds. ValueError otherwise."""
    m = re.fullmatch(r"\s*([\d.]+)(us|ms|s|m|h)\s*", text)
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS_US[m.group(2)]


def parse(text: str) -> dict:
    """wrk's output -> {rps, requests, p50_us, p75_us, p90_us, p99_us, errors (non-2xx/3xx),
    socket_errors {connect, read, write, timeout}}; a figure wrk did not print is None
    (percentiles need --latency). ValueError when the text is not wrk's output at all."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    total = re.search(r"^\s*(\d+) requests in ", text, re.M)
    if not rps or not total:
        raise ValueError("no 'Requests/sec' or 'N requests in' line: not wrk output")
    result: dict = {"rps": float(rps.group(1)), "requests": int(total.group(1))}
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)\s*$", text, re.M)
        result[f"p{pct}_us"] = duration_us(m.group(1)) if m else None
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    result["errors"] = int(non2xx.group(1)) if non2xx else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    result["socket_errors"] = (dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups())))
                               if sock else {"connect": 0, "read": 0, "write": 0, "timeout": 0})
    return result


def run(url: str, body: str, seconds: int, connections: int, script: str, cpu: int | None = None) -> dict:
    """One closed-loop wrk run (1 thread, `connections` keep-alive connections, POST `body` through
    the wrk Lua `script`, which reads it from CELSIUS_BENCH_BODY), pinned to `cpu` when given:
    `parse`'s figures plus the command. RuntimeError when wrk fails."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, url]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                          env={**os.environ, "CELSIUS_BENCH_BODY": body})
    try:
        result = parse(done.stdout)
    except ValueError as error:
        raise RuntimeError(f"wrk failed (exit {done.returncode}): {done.stderr.strip()[:500]}") from error
    result["command"] = " ".join(command[:-2] + [os.path.basename(script), "<url>"]) + f"  (body {body})"
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m celsius_loadtest.wrk WRK_OUTPUT_FILE", file=sys.stderr)
        return 2
    try:
        with open(argv[0]) as f:
            print(json.dumps(parse(f.read())))
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
