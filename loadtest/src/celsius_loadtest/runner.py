"""The main job: stand the local stack up, load it with Locust, sweep its capacity, keep the
numbers, write the report.

1. Exports the model (`python -m celsius_model export`) into a temporary folder.
2. Starts a model server on loopback (`stack.model_server_command`: tensorflow_model_server when
   it is on PATH, else the stand-in celsius-model-server; all take the same flags) and
   celsius-server wired to it over gRPC (its defaults: request coalescing on), and waits until
   `/readyz` is 200 and the model is available.
3. Runs headless Locust scenarios with identical users, spawn rate and duration:
   `native` (POST /convert), `model` (POST /convert/model) and `mixed` (both, equal weight),
   recording the CPU that Locust, the service and the model server used in each.
4. The capacity sweep (`sweep.py`): each configuration (native; the model path over gRPC and
   over REST, unbatched; with the model server's batching; with the service's request
   coalescing at its defaults) with the service and the model server pinned to a CPU each,
   under vegeta's open-loop load at fixed rates stepped up until errors or latency pass a
   bound; a closed-loop wrk ceiling per configuration. Configurations this checkout cannot
   run are named with the reason.
5. Writes the run folder (`--results`/`--run-id`): per scenario Locust's CSV files and HTML
   report, sweep.json and sweep.csv, run.json, report.md and its charts.

Every process it starts is stopped on exit, on an error and on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from celsius_loadtest import steps as plan
from celsius_loadtest import sweep
from celsius_loadtest.stack import (
    LOADTEST_DIR,
    REPO,
    MODEL_SERVER_CHOICES,
    Stack,
    cpu_seconds,
    executable_problem,
    http_get,
    log,
    model_server_command,
    model_server_problem,
    repo_relative,
    scrub_logs,
    scrub_paths,
    start_model_server,
    start_service,
    wait_with_cpu,
)

# celsius-server's --log-level values (server/src/config.cpp).
SERVICE_LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "off")
# What `scripts/run.sh --help` adds (it sets CELSIUS_PROG): the same job on Kubernetes.
RUN_SH_EPILOG = """On Kubernetes: scripts/run.sh --cluster [--down] [options] runs the Locust scenarios on a local
cluster that it brings up (and with --down takes down at the end); scripts/run.sh --cluster --help
lists its options."""

SCENARIOS = {"native": "native", "model": "model", "mixed": None}  # scenario -> Locust --tags (None: all)


def parse_duration(text: str) -> int:
    """Locust's run-time syntax (90, 90s, 2m, 1h30m) in seconds."""
    if text.isdigit():
        return int(text)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not parts or not any(parts.groups()):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 75s, 2m)")
    h, m, s = (int(g or 0) for g in parts.groups())
    return h * 3600 + m * 60 + s


def versions(python: str, locust: str, service_info: dict, model_server: str, generator: dict | None) -> dict:
    def out(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip()
        except OSError:
            return ""

    tf = out(python, "-c", "import tensorflow as tf; print(tf.__version__)")
    return {"service": service_info.get("version"), "tensorflow": tf or None,
            "locust": out(locust, "--version").split(" from ")[0] or None, "model_server": model_server,
            "load_generator": f"vegeta {generator['version']}" if generator else None,
            "wrk": out("wrk", "--version").split(" Copyright")[0] or None if shutil.which("wrk") else None}


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def run_locust(args: argparse.Namespace, stack: Stack, model_command, model_base: Path, out: Path,
               work: Path) -> dict:
    """The Locust scenarios against one model server and one service (neither pinned, the
    service with its default event loops): {"service": ..., "scenarios": {name: CPU figures}}."""
    python = sys.executable
    locust = str(Path(python).with_name("locust"))
    seconds = args.duration
    log(f"starting the model server: {model_command.description}")
    model = start_model_server(stack, model_command, model_base, out / "model-server.log")
    log(f"model server: gRPC :{model.grpc_port}, REST :{model.rest_port}")
    service = start_service(stack, args.binary, model.grpc_url, work / "service.log", args.service_log_level,
                            port=args.port)
    log(f"celsius-server on {service.base} (--model-server {model.grpc_url})")
    service_info = json.loads(http_get(service.base + "/")[1] or "{}")
    log(f"ready: app_id {service_info.get('app_id')}")
    scenarios = {}
    for scenario in args.scenarios:
        tags = SCENARIOS[scenario]
        log(f"Locust scenario '{scenario}': {args.users} users, spawn rate {args.spawn_rate}/s, {seconds} s")
        command = [locust, "--config", str(LOADTEST_DIR / "locust.conf"), "-f", str(LOADTEST_DIR / "locustfile.py"),
                   "--host", service.base, "--users", str(args.users), "--spawn-rate", str(args.spawn_rate),
                   "--run-time", f"{seconds}s", "--csv", str(out / scenario), "--csv-full-history",
                   "--html", str(out / f"{scenario}.html")]
        if tags:
            command += ["--tags", tags]
        locust_log = out / f"{scenario}.log"
        before = {"service": cpu_seconds(service.proc.pid), "model_server": cpu_seconds(model.proc.pid)}
        started = time.monotonic()
        proc = stack.start(f"locust {scenario}", command, locust_log)

        def progress(elapsed: int, scenario: str = scenario) -> None:
            if elapsed % 10 == 0 and elapsed < seconds:
                print(f"    {scenario}: {elapsed}/{seconds} s", flush=True)

        locust_cpu = wait_with_cpu(proc, seconds + 300, progress)
        wall = time.monotonic() - started
        stack.forget(proc)
        scenarios[scenario] = {
            "wall_s": round(wall, 2), "locust_cpu_s": round(locust_cpu, 2),
            "service_cpu_s": round(cpu_seconds(service.proc.pid) - before["service"], 2),
            "model_server_cpu_s": round(cpu_seconds(model.proc.pid) - before["model_server"], 2),
        }
        summary = locust_log.read_text(errors="replace")
        totals = re.findall(r"^\s*Aggregated\s+(\d+)\s+(\d+)\(", summary, re.M)
        if totals:
            print(f"    {scenario}: {totals[-1][0]} requests, {totals[-1][1]} failures (Locust exit {proc.returncode}); "
                  f"Locust used {locust_cpu / wall:.2f} CPU cores", flush=True)
        if proc.returncode not in (0, 1):  # 1: some requests failed; the report shows them
            raise RuntimeError(f"Locust failed in scenario {scenario}:\n{summary[-3000:]}")
    stack.stop()
    return {"service_info": service_info, "cpu": scenarios,
            "model_path": "gRPC to the model server (--model-server grpc://127.0.0.1:<port>)"}


def write_sweep_csv(result: dict, path: Path) -> None:
    """One row per step of every configuration (the same figures as sweep.json, flat)."""
    columns = ["configuration", "offered_rps", "achieved_rps", "sent_rps", "requests", "errors", "p50_us", "p90_us",
               "p99_us", "p999_us", "max_us", "measured", "send_lag_p99_us", "service_cpu_us_per_request",
               "model_server_cpu_us_per_request", "generator_cpu_us_per_request", "generator_cores", "verdict"]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for c in result["configurations"]:
            for raw in c["steps"]:
                st = plan.Step.from_dict(raw)
                per = {p: st.cpu_us_per_request(p) for p in ("service", "model_server", "generator")}
                writer.writerow([c["name"], st.offered_rps, _r(st.achieved_rps), _r(st.sent_rps), st.requests,
                                 st.errors, _r(st.p50_us), _r(st.p90_us), _r(st.p99_us), _r(st.p999_us), _r(st.max_us),
                                 st.measured, _r(st.send_lag_p99_us), _r(per["service"]), _r(per["model_server"]),
                                 _r(per["generator"]), _r(st.generator_cores, 3), st.verdict])


def _r(value: float | None, digits: int = 1):
    return "" if value is None else round(value, digits)


def run(args: argparse.Namespace) -> Path:
    python = sys.executable
    locust = str(Path(python).with_name("locust"))
    args.binary = Path(args.binary or REPO / "build" / "release" / "celsius-server")
    if not args.binary.exists():
        raise RuntimeError(f"{args.binary} is not built (cmake --preset release && cmake --build --preset release)")
    vegeta = sweep.find_vegeta(args.vegeta) if args.sweep else None
    if args.sweep and not vegeta:
        raise RuntimeError("vegeta is not installed (scripts/install-tools.sh vegeta), or pass --sweep none")
    run_id = args.run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = Path(args.results) / run_id
    out.mkdir(parents=True, exist_ok=False)  # never into an earlier run (run_folder_problem)
    stack = Stack()
    work = Path(tempfile.mkdtemp(prefix="celsius-run-"))
    started = time.monotonic()
    log(f"scratch folder {work} (removed at the end)")
    try:
        log("exporting the model (python -m celsius_model export)")
        model_env = {"PYTHONPATH": str(REPO / "model" / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
        subprocess.run([python, "-m", "celsius_model", "export", "--output", str(work / "f2c")], check=True,
                       env={**os.environ, **model_env}, stdout=subprocess.DEVNULL)
        model_command = model_server_command(args.model_server, python)

        locust_result = run_locust(args, stack, model_command, work / "f2c", out, work) if args.scenarios else {}

        sweep_result = None
        if args.sweep:
            settings = sweep.Settings(
                policy=plan.Policy(start_rps=args.start_rate, p99_bound_us=args.p99_bound_ms * 1000,
                                   max_steps=args.max_steps),
                step_seconds=args.step_seconds, workers=args.sweep_workers, ceiling_seconds=args.ceiling_seconds,
                ceiling_connections=args.ceiling_connections, configurations=args.sweep, vegeta=vegeta,
                service_log_level=args.service_log_level)
            log(f"capacity sweep: {', '.join(args.sweep)}; {args.step_seconds:g} s per step from "
                f"{args.start_rate:g} req/s, p99 bound {args.p99_bound_ms:g} ms")
            sweep_result = sweep.Sweep(stack, settings, model_command, work / "f2c", args.binary, work, out).run()
            (out / "sweep.json").write_text(json.dumps(sweep_result, indent=2) + "\n")
            write_sweep_csv(sweep_result, out / "sweep.csv")

        service_info = locust_result.get("service_info") or {}
        if not service_info.get("version"):
            done = subprocess.run([str(args.binary), "--version"], capture_output=True, text=True, timeout=30)
            service_info = {**service_info, "version": done.stdout.strip() or None}
        meta = {
            "run_id": run_id,
            "command": args.command_line,
            "scenarios": args.scenarios,
            "users": args.users, "spawn_rate": args.spawn_rate, "duration_s": args.duration,
            "locust_settings": "loadtest/locust.conf",
            "locust_cpu": locust_result.get("cpu"),
            "service": {"app_id": service_info.get("app_id"), "log_level": args.service_log_level,
                        "model_path": locust_result.get("model_path")},
            "sweep": {"configurations": args.sweep, "step_seconds": args.step_seconds, "start_rps": args.start_rate,
                      "p99_bound_ms": args.p99_bound_ms, "max_steps": args.max_steps,
                      "ceiling_seconds": args.ceiling_seconds, "ceiling_connections": args.ceiling_connections}
            if sweep_result else None,
            "elapsed_s": round(time.monotonic() - started),
            "git_commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                                         text=True).stdout.strip() or None,
            "machine": machine(),
            "versions": versions(python, locust, service_info, model_command.description,
                                 sweep_result["generator"] if sweep_result else None),
        }
        (out / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
        scrub_logs(out, work)

    from celsius_loadtest.report import write_report

    report = write_report(out)
    log(f"report: {repo_relative(report)} ({time.monotonic() - started:.0f} s in all)")
    return out


def add_locust_arguments(parser: argparse.ArgumentParser, title: str, none_allowed: str = "") -> argparse._ArgumentGroup:
    """The Locust options both jobs share (this local one and `cluster`), with the same defaults:
    --duration, --users, --spawn-rate, --scenarios. `none_allowed` is added to --scenarios' help
    where `none` is accepted."""
    locust = parser.add_argument_group(title)
    locust.add_argument("--duration", type=parse_duration, default=parse_duration("60s"),
                        help="Locust run time per scenario (default 60s)")
    locust.add_argument("--users", type=int, default=16, help="Locust users per scenario (default 16)")
    locust.add_argument("--spawn-rate", type=finite, default=None, help="users started per second (default: all at once)")
    locust.add_argument("--scenarios", default="native,model,mixed",
                        help=f"comma-separated, from: native, model, mixed{none_allowed} (default: all three)")
    return locust


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=os.environ.get("CELSIUS_PROG", "python -m celsius_loadtest run"),
                                     allow_abbrev=False, description=__doc__,
                                     epilog=RUN_SH_EPILOG if "CELSIUS_PROG" in os.environ else None,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_locust_arguments(parser, "Locust scenarios", "; or none")
    capacity = parser.add_argument_group("capacity sweep")
    capacity.add_argument("--sweep", default=",".join(sweep.CONFIGURATION_NAMES),
                          help=f"configurations, comma-separated, from: {', '.join(sweep.CONFIGURATION_NAMES)}; "
                               "or none (default: all; those this checkout cannot run are skipped and named)")
    capacity.add_argument("--step-seconds", type=finite, default=4.0, help="length of one constant-rate step (default 4)")
    capacity.add_argument("--start-rate", type=finite, default=100.0, help="first offered rate, req/s (default 100)")
    capacity.add_argument("--p99-bound-ms", type=finite, default=10.0,
                          help="latency bound: a step with p99 above it is out of bounds (default 10)")
    capacity.add_argument("--max-steps", type=int, default=14, help="most steps per configuration (default 14)")
    capacity.add_argument("--sweep-workers", type=int, default=256,
                          help="vegeta's workers (its most requests in flight; default 256)")
    capacity.add_argument("--vegeta", default=None, help="vegeta binary (default: .tools/bin/vegeta, else PATH)")
    capacity.add_argument("--ceiling-seconds", type=int, default=5,
                          help="closed-loop wrk run per configuration; 0 skips (default 5)")
    capacity.add_argument("--ceiling-connections", type=int, default=16,
                          help="wrk's connections in the closed-loop run (default 16)")
    parser.add_argument("--model-server", default="auto",
                        help=f"{', '.join(MODEL_SERVER_CHOICES)} or the path of a binary with tensorflow_model_server's "
                             "flags (default auto: tensorflow_model_server when on PATH, else stand-in, which is "
                             "celsius-model-server from build/release)")
    parser.add_argument("--port", type=int, default=0, help="service port in the Locust scenarios (default: a free one)")
    parser.add_argument("--binary", default=None,
                        help="celsius-server binary (default build/release/celsius-server, which scripts/run.sh builds)")
    parser.add_argument("--service-log-level", default="warn", choices=SERVICE_LOG_LEVELS,
                        help="celsius-server --log-level during the run: %(choices)s (default warn: no "
                             "per-request log lines)")
    parser.add_argument("--results", default=str(REPO / "results"),
                        help="parent folder of the run folder (default: the repository's results/)")
    parser.add_argument("--run-id", default=None,
                        help="run folder name, a new folder inside --results (default: UTC timestamp)")
    parser.add_argument("--check-options", action="store_true",
                        help="check the options and exit (scripts/run.sh does, before it installs, builds or "
                             "starts anything)")
    return parser


def out_of_range(checks: dict[str, tuple[bool, str]]) -> str | None:
    """The first option whose check failed, as an error message: `checks` maps an option to
    (its value is acceptable, what it must be)."""
    for option, (ok, must) in checks.items():
        if not ok:
            return f"{option}: must be {must}"
    return None


def run_folder_problem(results: str, run_id: str | None) -> str | None:
    """Why RESULTS/RUN_ID cannot be a new run's folder, as an error message, or None. A run id is
    a plain folder name (the run stays inside --results), and a run never writes into a folder
    that exists: a report regenerated there would credit the earlier run's numbers to this
    command."""
    if run_id is None:
        return None
    if run_id in ("", ".", "..") or "/" in run_id or "\0" in run_id:
        return f"--run-id: must be a plain folder name, not {run_id!r}"
    if (Path(results) / run_id).exists():
        return f"--run-id: {Path(results) / run_id} exists already: choose another name or remove it"
    return None


def _names(text: str, known: list[str], option: str) -> list[str]:
    """A comma-separated list of names from `known`, or `none` (an empty list). ValueError: an
    empty list that is not `none` (`""`, `,`), an unknown name, a name given twice (its run
    would write over the first one's files)."""
    if text.strip() == "none":
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"{option}: empty; choose from {known} or none")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"{option}: unknown {unknown}; choose from {known} or none")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{option}: {twice} given more than once")
    return names


def finite(text: str) -> float:
    """A float option's type: a finite number (`inf` and `nan` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def results_problem(results: str) -> str | None:
    """Why --results cannot hold run folders, as an error message, or None (a missing folder is
    created by the run)."""
    path = Path(results)
    if path.exists() and not path.is_dir():
        return f"--results: {results} is not a folder"
    return None


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Wrong options are refused as argparse refuses them: usage, "PROG: error: ...", exit 2.
    try:
        args.scenarios = _names(args.scenarios, list(SCENARIOS), "--scenarios")
        args.sweep = _names(args.sweep, sweep.CONFIGURATION_NAMES, "--sweep")
    except ValueError as error:
        parser.error(str(error))
    if not args.scenarios and not args.sweep:
        parser.error("nothing to run (--scenarios none and --sweep none)")
    wrong = out_of_range({
        "--duration": (args.duration >= 1, "at least 1 s"),
        "--users": (args.users >= 1, "at least 1"),
        "--spawn-rate": (args.spawn_rate is None or args.spawn_rate > 0, "above 0"),
        "--step-seconds": (args.step_seconds > 0, "above 0"),
        "--start-rate": (args.start_rate > 0, "above 0"),
        "--p99-bound-ms": (args.p99_bound_ms > 0, "above 0"),
        "--max-steps": (args.max_steps >= 1, "at least 1"),
        "--sweep-workers": (args.sweep_workers >= 1, "at least 1"),
        "--ceiling-seconds": (args.ceiling_seconds >= 0, "0 (skip) or more"),
        "--ceiling-connections": (args.ceiling_connections >= 1, "at least 1"),
        "--port": (0 <= args.port <= 65535, "a TCP port, 0-65535 (0: a free one)"),
    })
    wrong = (wrong or results_problem(args.results) or run_folder_problem(args.results, args.run_id)
             or model_server_problem(args.model_server)
             or executable_problem("--vegeta", args.vegeta) or executable_problem("--binary", args.binary))
    if wrong:
        parser.error(wrong)
    if args.spawn_rate is None:
        args.spawn_rate = args.users
    if args.check_options:
        return 0
    # scripts/run.sh names itself; run directly, this module is the command.
    args.command_line = scrub_paths(os.environ.get("CELSIUS_RUN_COMMAND")
                                    or "python -m celsius_loadtest run " + " ".join(argv))

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
