"""The main job: stand the local stack up, load it with Locust, keep the numbers, write the report.

1. Exports the model (`python -m celsius_model export`) into a temporary folder.
2. Starts a model server on loopback: `tensorflow_model_server` when it is on PATH, else the
   local stand-in `celsius-model-server` (C++, build/release/); both take the same flags.
3. Starts celsius-server wired to it over gRPC and waits until `/readyz` is 200.
4. Runs headless Locust scenarios with identical users, spawn rate and duration:
   `native` (POST /convert), `model` (POST /convert/model) and `mixed` (both, equal weight).
5. Measures ceilings with wrk for /convert and /convert/model (microsecond percentiles,
   without Locust's own CPU limit), when wrk is installed.
6. Writes RUN_DIR: per scenario Locust's CSV files and HTML report, run.json, ceilings.json,
   report.md and its charts.

Every process it starts is stopped on exit, on an error and on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

LOADTEST_DIR = Path(__file__).resolve().parents[2]
REPO = LOADTEST_DIR.parent
SCENARIOS = {"native": "native", "model": "model", "mixed": None}  # scenario -> Locust --tags (None: all)
WRK_SCRIPT = REPO / "server" / "bench" / "post_convert.lua"


def log(message: str) -> None:
    print(f"==> {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def parse_duration(text: str) -> int:
    """Locust's run-time syntax (90, 90s, 2m, 1h30m) in seconds."""
    if text.isdigit():
        return int(text)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not parts or not any(parts.groups()):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 75s, 2m)")
    h, m, s = (int(g or 0) for g in parts.groups())
    return h * 3600 + m * 60 + s


@dataclass
class Stack:
    """The processes of one run; stop() ends them all, newest first."""

    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], log_path: Path, env: dict | None = None) -> subprocess.Popen:
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                    start_new_session=True)  # Ctrl-C reaches only the runner, which stops them
        self.processes.append((name, proc))
        return proc

    def stop(self) -> None:
        for name, proc in reversed(self.processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    log(f"{name} did not stop on SIGTERM; killing it")
                    proc.kill()
                    proc.wait()
        self.processes.clear()


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen | None = None, log_path: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:] if log_path else ""
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}\n{tail}")
        time.sleep(0.2)
    raise RuntimeError(f"{what}: not ready within {timeout:.0f} s")


def model_server_command(choice: str, python: str) -> tuple[list[str], str, dict]:
    """The model server to run: (argv prefix, description, extra environment)."""
    real = shutil.which("tensorflow_model_server")
    if choice == "tensorflow_model_server" or (choice == "auto" and real):
        if not real:
            raise RuntimeError("tensorflow_model_server is not on PATH")
        version = subprocess.run([real, "--version"], capture_output=True, text=True).stdout.strip()
        return [real], f"tensorflow_model_server ({version.splitlines()[0] if version else 'unknown version'})", {}
    binary = Path(os.environ.get("CELSIUS_MODEL_SERVER_BINARY", REPO / "build" / "release" / "celsius-model-server"))
    if not binary.exists():
        raise RuntimeError(f"{binary} is not built (cmake --preset release && cmake --build --preset release)")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()
    described = f"{version[2]} {version[3]}, TensorFlow {version[-1]}" if len(version) >= 7 else str(binary)
    return ([str(binary), "--celsius_bind_address=127.0.0.1"], f"stand-in: {described} (C++, TensorFlow's C API)",
            {"TF_CPP_MIN_LOG_LEVEL": "2"})


def run_wrk(url: str, body: str, seconds: int, connections: int) -> dict:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(WRK_SCRIPT), url]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "CELSIUS_BENCH_BODY": body},
                            timeout=seconds + 60)
    text = result.stdout

    def micros(label: str) -> float | None:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)] if m else None

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket_errors = re.search(r"Socket errors: (.*)", text)
    return {"rps": float(rps.group(1)) if rps else None, "p50_us": micros("50"), "p90_us": micros("90"),
            "p99_us": micros("99"), "requests": int(total.group(1)) if total else None,
            "errors": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else None,
            "command": " ".join(command[:-1] + ["<url>"]) + f"  (body {body})"}


def versions(python: str, locust: str, service_info: dict, model_server: str) -> dict:
    def out(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip()
        except OSError:
            return ""

    tf = out(python, "-c", "import tensorflow as tf; print(tf.__version__)")
    return {"service": service_info.get("version"), "tensorflow": tf or None,
            "locust": out(locust, "--version").split(" from ")[0] or None, "model_server": model_server}


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def run(args: argparse.Namespace) -> Path:
    python = sys.executable
    locust = str(Path(python).with_name("locust"))
    binary = Path(args.binary)
    if not binary.exists():
        raise RuntimeError(f"{binary} is not built (cmake --preset release && cmake --build --preset release)")
    run_id = args.run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = Path(args.results) / run_id
    out.mkdir(parents=True, exist_ok=True)
    seconds = args.duration
    stack = Stack()
    work = Path(tempfile.mkdtemp(prefix="celsius-run-"))
    try:
        log("exporting the model (python -m celsius_model export)")
        model_env = {"PYTHONPATH": str(REPO / "model" / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
        subprocess.run([python, "-m", "celsius_model", "export", "--output", str(work / "f2c")], check=True,
                       env={**os.environ, **model_env}, stdout=subprocess.DEVNULL)

        argv, model_kind, env = model_server_command(args.model_server, python)
        grpc_port, rest_port = free_port(), free_port()
        while rest_port == grpc_port:
            rest_port = free_port()
        log(f"starting the model server: {model_kind}; gRPC :{grpc_port}, REST :{rest_port}")
        model_log = out / "model-server.log"
        model = stack.start("model server", argv + [f"--port={grpc_port}", f"--rest_api_port={rest_port}",
                                                    "--model_name=f2c", f"--model_base_path={work / 'f2c'}"],
                            model_log, env)
        wait_until(lambda: '"AVAILABLE"' in http_get(f"http://127.0.0.1:{rest_port}/v1/models/f2c")[1], 180,
                   "model server", model, model_log)

        port = args.port or free_port()
        base = f"http://127.0.0.1:{port}"
        log(f"starting celsius-server on {base} (--model-server grpc://127.0.0.1:{grpc_port})")
        service_log = work / "service.log"
        service = stack.start("celsius-server", [str(binary), "--host", "127.0.0.1", "--port", str(port),
                                                 "--log-level", args.service_log_level,
                                                 "--model-server", f"grpc://127.0.0.1:{grpc_port}"], service_log)
        wait_until(lambda: http_get(base + "/readyz")[0] == 200, 60, "celsius-server /readyz", service, service_log)
        service_info = json.loads(http_get(base + "/")[1] or "{}")
        log(f"ready: app_id {service_info.get('app_id')}")

        for scenario in args.scenarios:
            tags = SCENARIOS[scenario]
            log(f"Locust scenario '{scenario}': {args.users} users, spawn rate {args.spawn_rate}/s, {seconds} s")
            command = [locust, "--config", str(LOADTEST_DIR / "locust.conf"), "-f", str(LOADTEST_DIR / "locustfile.py"),
                       "--host", base, "--users", str(args.users), "--spawn-rate", str(args.spawn_rate),
                       "--run-time", f"{seconds}s", "--csv", str(out / scenario), "--csv-full-history",
                       "--html", str(out / f"{scenario}.html")]
            if tags:
                command += ["--tags", tags]
            locust_log = out / f"{scenario}.log"
            proc = stack.start(f"locust {scenario}", command, locust_log)
            started = time.monotonic()
            while proc.poll() is None:
                time.sleep(1)
                elapsed = time.monotonic() - started
                if int(elapsed) % 10 == 0 and elapsed < seconds:
                    print(f"    {scenario}: {int(elapsed)}/{seconds} s", flush=True)
            stack.processes.remove(("locust " + scenario, proc))
            summary = locust_log.read_text(errors="replace")
            totals = re.findall(r"^\s*Aggregated\s+(\d+)\s+(\d+)\(", summary, re.M)
            if totals:
                print(f"    {scenario}: {totals[-1][0]} requests, {totals[-1][1]} failures (Locust exit {proc.returncode})",
                      flush=True)
            if proc.returncode not in (0, 1):  # 1: some requests failed; the report shows them
                raise RuntimeError(f"Locust failed in scenario {scenario}:\n{summary[-3000:]}")

        ceilings = {}
        if args.ceiling_seconds > 0:
            if shutil.which("wrk"):
                for name, path in (("POST /convert", "/convert"), ("POST /convert/model", "/convert/model")):
                    log(f"ceiling of {name} with wrk ({args.ceiling_seconds} s, {args.ceiling_connections} connections)")
                    ceilings[name] = run_wrk(base + path, '{"fahrenheit": 98.6}', args.ceiling_seconds,
                                             args.ceiling_connections)
                    print(f"    {ceilings[name]['rps']:.0f} req/s, p50 {ceilings[name]['p50_us']:.0f} us, "
                          f"p99 {ceilings[name]['p99_us']:.0f} us, errors {ceilings[name]['errors']}", flush=True)
                (out / "ceilings.json").write_text(json.dumps(ceilings, indent=2) + "\n")
            else:
                log("wrk not installed (scripts/install-deps.sh bench): no ceilings")

        meta = {
            "run_id": run_id,
            "command": args.command_line,
            "scenarios": args.scenarios,
            "users": args.users, "spawn_rate": args.spawn_rate, "duration_s": seconds,
            "locust_settings": "loadtest/locust.conf",
            "ceiling": {"seconds": args.ceiling_seconds, "connections": args.ceiling_connections} if ceilings else None,
            "service": {"app_id": service_info.get("app_id"), "log_level": args.service_log_level,
                        "model_path": f"gRPC to the model server (--model-server grpc://127.0.0.1:{grpc_port})"},
            "git_commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                                         text=True).stdout.strip() or None,
            "machine": machine(),
            "versions": versions(python, locust, service_info, model_kind),
        }
        (out / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)

    from celsius_loadtest.report import write_report

    report = write_report(out)
    log(f"report: {report}")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m celsius_loadtest run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=parse_duration, default=parse_duration("75s"),
                        help="Locust run time per scenario (default 75s: about five minutes in all)")
    parser.add_argument("--users", type=int, default=16, help="Locust users per scenario (default 16)")
    parser.add_argument("--spawn-rate", type=float, default=None, help="users started per second (default: all at once)")
    parser.add_argument("--scenarios", default="native,model,mixed",
                        help="comma-separated, from: native, model, mixed (default: all three)")
    parser.add_argument("--ceiling-seconds", type=int, default=10, help="wrk run per endpoint; 0 skips (default 10)")
    parser.add_argument("--ceiling-connections", type=int, default=16)
    parser.add_argument("--model-server", choices=("auto", "stand-in", "tensorflow_model_server"), default="auto",
                        help="auto: tensorflow_model_server when on PATH, else the stand-in")
    parser.add_argument("--port", type=int, default=0, help="service port (default: a free one)")
    parser.add_argument("--binary", default=str(REPO / "server" / "build" / "release" / "celsius-server"))
    parser.add_argument("--service-log-level", default="warn",
                        help="celsius-server --log-level during the run (default warn: no per-request log lines)")
    parser.add_argument("--results", default=str(REPO / "results"), help="parent folder of the run folder")
    parser.add_argument("--run-id", default=None, help="run folder name (default: UTC timestamp)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown or not args.scenarios:
        print(f"error: unknown scenarios {unknown}; choose from {list(SCENARIOS)}", file=sys.stderr)
        return 2
    if args.spawn_rate is None:
        args.spawn_rate = args.users
    # scripts/run.sh names itself; run directly, this module is the command.
    args.command_line = os.environ.get("CELSIUS_RUN_COMMAND") or "python -m celsius_loadtest run " + " ".join(argv)

    def terminate(signum, frame):  # SIGTERM behaves like Ctrl-C: unwind and stop everything
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        run(args)
    except KeyboardInterrupt:
        print("\ninterrupted: stopped every process this run started", file=sys.stderr)
        return 130
    except (RuntimeError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
