"""The capacity sweep: each configuration of the local stack under an open-loop load at fixed
request rates, stepped up until errors or latency pass a bound (the plan: `steps`).

Load generator: vegeta (`vegeta attack -rate=R/1s`, github.com/tsenart/vegeta, installed by
scripts/install-tools.sh), with a fixed pool of workers; latencies are counted from each
request's intended send time (`steps.latency_from_schedule`), so a generator that falls
behind cannot hide queueing. Every answer is checked (status 200 and the right Celsius
value, `answer_checks.py`).

Placement (2 CPUs or more, taskset): the service (one event loop, `--threads 1`) alone on the
first CPU, the model server on the second, the load generator beside the model server (its
CPU is measured too). CPU per request of each process at each step comes from
/proc/<pid>/stat (service, model server) and the generator's rusage (wait4).

Configurations (`CONFIGURATIONS`), each skipped with its reason when this checkout cannot run
it: native (POST /convert); the model path unbatched (the service's coalescing off) over gRPC
and over REST; with the model
server's batching (`--enable_batching --batching_parameters_file`, TF Serving's flags: needs a
model server whose --help lists them); with the service's request coalescing at its defaults
(`--model-batch-max-values/-timeout-us/-max-inflight`: needs a celsius-server whose --help
lists them).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from celsius_loadtest import steps as plan
from celsius_loadtest import wrk
from celsius_loadtest.stack import (
    CLOCK_TICKS,
    LOADTEST_DIR,
    REPO,
    ModelServer,
    ModelServerCommand,
    Stack,
    cpu_ids,
    cpu_seconds,
    help_text,
    log,
    start_model_server,
    start_service,
    wait_with_cpu,
)

FAHRENHEIT = 98.6
BODY = json.dumps({"fahrenheit": FAHRENHEIT})
WRK_SCRIPT = REPO / "server" / "bench" / "post_convert.lua"

# The model server's batching (TF Serving's BatchingParameters in text format,
# tensorflow_serving/servables/tensorflow/session_bundle_config.proto). The model server has one
# CPU here: one batch thread; a batch waits at most 1 ms for more requests.
BATCHING_PARAMETERS = """\
max_batch_size { value: 128 }
batch_timeout_micros { value: 1000 }
max_enqueued_batches { value: 1000000 }
num_batch_threads { value: 1 }
"""
# The service's request coalescing is on by default (server/README.md, "Request coalescing"):
# the unbatched configurations turn it off; the coalescing one names the defaults, so the run
# records them (256 values per Predict call, no added wait, 2 merged calls in flight).
NO_COALESCING_FLAGS = ("--model-batch-max-values", "0")
COALESCING_FLAGS = ("--model-batch-max-values", "256", "--model-batch-timeout-us", "0",
                    "--model-batch-max-inflight", "2")
BATCHING_FLAGS = ("--enable_batching", "--batching_parameters_file")


@dataclass(frozen=True)
class Configuration:
    name: str
    title: str
    path: str  # the endpoint loaded
    transport: str  # how the service reaches the model server: grpc or rest
    model_server_batching: bool = False
    service_flags: tuple[str, ...] = ()


CONFIGURATIONS = (
    Configuration("native", "native (POST /convert)", "/convert", "grpc"),
    Configuration("model-grpc", "model, gRPC, unbatched", "/convert/model", "grpc",
                  service_flags=NO_COALESCING_FLAGS),
    Configuration("model-rest", "model, REST, unbatched", "/convert/model", "rest",
                  service_flags=NO_COALESCING_FLAGS),
    Configuration("model-server-batching", "model, gRPC, model server batching", "/convert/model", "grpc",
                  model_server_batching=True, service_flags=NO_COALESCING_FLAGS),
    Configuration("service-coalescing", "model, gRPC, service coalescing", "/convert/model", "grpc",
                  service_flags=COALESCING_FLAGS),
)
CONFIGURATION_NAMES = [c.name for c in CONFIGURATIONS]


@dataclass
class Settings:
    policy: plan.Policy
    step_seconds: float = 4.0
    warmup_s: float = 0.5  # per step, left out of the percentiles (connections being opened)
    workers: int = 256  # vegeta -workers and -max-workers
    timeout_s: float = 5.0  # vegeta -timeout: a request without an answer by then is an error
    ceiling_seconds: int = 5  # closed-loop wrk run per configuration; 0: none
    ceiling_connections: int = 16
    configurations: list[str] = field(default_factory=lambda: list(CONFIGURATION_NAMES))
    vegeta: str = "vegeta"
    service_log_level: str = "warn"


def find_vegeta(explicit: str | None) -> str | None:
    """The vegeta binary: `explicit` if it is a file (no other when it is given), else
    .tools/bin/vegeta (scripts/install-tools.sh), else PATH; None if there is none."""
    candidates = (explicit,) if explicit else (str(REPO / ".tools" / "bin" / "vegeta"), shutil.which("vegeta"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def vegeta_version(binary: str) -> str:
    """The pinned module version install-tools.sh stamps beside the binary (`go install` builds
    print no version of their own)."""
    stamp = Path(binary).with_name(".vegeta.version")
    return stamp.read_text().split()[0].rsplit("@", 1)[-1] if stamp.exists() else "unknown version"


def placement() -> dict | None:
    """CPU of each process, or None (no pinning) with fewer than 2 CPUs or without taskset."""
    cpus = cpu_ids()
    if len(cpus) < 2 or not shutil.which("taskset"):
        return None
    return {"service": cpus[0], "model_server": cpus[1], "generator": cpus[1]}


def skip_reason(config: Configuration, model_command: ModelServerCommand, service_help: str) -> str | None:
    """Why this checkout cannot run `config`, or None."""
    if config.model_server_batching and not model_command.has_flags(*BATCHING_FLAGS):
        return (f"the model server ({model_command.description}) does not list {' and '.join(BATCHING_FLAGS)} "
                "in its --help")
    missing = [f for f in config.service_flags if f.startswith("--") and f not in service_help]
    if missing:
        return f"celsius-server does not list {', '.join(missing)} in its --help"
    return None


def _answer_checks():
    spec = importlib.util.spec_from_file_location("answer_checks", LOADTEST_DIR / "answer_checks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAX_MESSAGES, MAX_MESSAGE_CHARS = 20, 500  # distinct error messages kept per step, and their length
VEGETA_CSV_COLUMNS = ["timestamp_ns", "code", "latency_ns", "bytes_out", "bytes_in", "error", "body", "attack", "seq",
                      "method", "url", "headers"]  # `vegeta encode -h` (v12.13: CSV without a header)


def read_results(csv_path: Path, want_model: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                              dict[str, int]]:
    """vegeta's CSV results -> (send time ns, sequence, latency ns, good answer, errors by message).
    A request is good when it got 200, no transport error, and the right answer."""
    frame = pd.read_csv(csv_path, header=None, names=VEGETA_CSV_COLUMNS, keep_default_na=False,
                        dtype={"error": str, "body": str, "code": np.int64})
    if frame.empty:
        return (np.array([], np.int64),) * 3 + (np.array([], bool), {})
    checks = _answer_checks()
    verdicts: dict[str, str | None] = {}  # encoded body -> None (right) or what is wrong
    for encoded in frame.loc[frame["code"] == 200, "body"].unique():
        try:
            answer = json.loads(base64.b64decode(encoded))
            verdicts[encoded] = checks.check_answer(answer, FAHRENHEIT, False, want_model)
        except ValueError as error:
            verdicts[encoded] = f"answer is not JSON: {error}"
    messages = pd.Series("", index=frame.index)
    transport = frame["error"] != ""
    messages[transport] = frame.loc[transport, "error"]
    status = ~transport & (frame["code"] != 200)
    messages[status] = [f"HTTP {code}: {_text(body)}" for code, body in frame.loc[status, ["code", "body"]].itertuples(
        index=False)]
    answered = ~transport & ~status
    wrong = frame.loc[answered, "body"].map(verdicts)
    messages[wrong.index] = wrong.fillna("").map(lambda v: f"wrong answer: {v}" if v else "")
    good = (messages == "").to_numpy()
    counts = messages[~good].str.slice(0, MAX_MESSAGE_CHARS).value_counts()
    errors = {str(k): int(v) for k, v in counts.head(MAX_MESSAGES).items()}
    if len(counts) > MAX_MESSAGES:  # keep the total: errors_by_message always sums to the errors
        errors = {str(k): int(v) for k, v in counts.head(MAX_MESSAGES - 1).items()}
        errors[f"({len(counts) - MAX_MESSAGES + 1} other messages)"] = int(counts.iloc[MAX_MESSAGES - 1:].sum())
    return (frame["timestamp_ns"].to_numpy(np.int64), frame["seq"].to_numpy(np.int64),
            frame["latency_ns"].to_numpy(np.int64), good, errors)


def _text(encoded: str, limit: int = 300) -> str:
    try:
        return base64.b64decode(encoded).decode("utf-8", errors="replace")[:limit]
    except ValueError:
        return encoded[:limit]


class Sweep:
    """Runs the selected configurations one after the other; `run()` returns what sweep.json holds."""

    def __init__(self, stack: Stack, settings: Settings, model_command: ModelServerCommand, model_base: Path,
                 binary: Path, work: Path, logs: Path) -> None:
        self.stack, self.settings, self.model_command = stack, settings, model_command
        self.model_base, self.binary, self.work, self.logs = model_base, binary, work, logs
        self.pins = placement()
        self.model: ModelServer | None = None

    def _cpu(self, role: str) -> int | None:
        return self.pins[role] if self.pins else None

    def run(self) -> dict:
        s = self.settings
        service_help = help_text([str(self.binary)])
        selected = [c for c in CONFIGURATIONS if c.name in s.configurations]
        skipped = [{"name": c.name, "title": c.title, "reason": "not selected (--sweep)"}
                   for c in CONFIGURATIONS if c.name not in s.configurations]
        runnable = []
        for c in selected:
            reason = skip_reason(c, self.model_command, service_help)
            if reason:
                log(f"sweep: skipping {c.name}: {reason}")
                skipped.append({"name": c.name, "title": c.title, "reason": reason})
            else:
                runnable.append(c)
        results: dict[str, dict] = {}
        # Configurations sharing the unbatched model server first: one restart at most.
        for c in sorted(runnable, key=lambda c: c.model_server_batching):
            try:
                results[c.name] = self._configuration(c)
            except RuntimeError as error:  # a process that would not start or a generator that failed
                reason = f"failed: {str(error).splitlines()[0]}"
                log(f"sweep: {c.name}: {reason}")
                skipped.append({"name": c.name, "title": c.title, "reason": reason})
        if self.model:
            self.stack.stop_one(self.model.proc)
            self.model = None
        order = {c.name: i for i, c in enumerate(CONFIGURATIONS)}
        return {
            "generator": {"tool": "vegeta", "version": vegeta_version(s.vegeta), "workers": s.workers,
                          "timeout_s": s.timeout_s},
            "body": BODY,
            "step_seconds": s.step_seconds,
            "warmup_s": s.warmup_s,
            "policy": asdict(s.policy),
            "placement": self.pins,
            "cpu_tick_s": 1 / CLOCK_TICKS,
            "model_server": self.model_command.description,
            "configurations": [results[n] for n in sorted(results, key=order.get)],
            "skipped": sorted(skipped, key=lambda k: order[k["name"]]),
        }

    def _model_server(self, batching: bool) -> ModelServer:
        flags: tuple[str, ...] = ()
        if batching:
            params = self.work / "batching_parameters.txt"
            params.write_text(BATCHING_PARAMETERS)
            flags = ("--enable_batching=true", f"--batching_parameters_file={params}")
        if self.model and self.model.flags == flags:
            return self.model
        if self.model:
            self.stack.stop_one(self.model.proc)
            self.model = None
        log(f"sweep: starting the model server on CPU {self._cpu('model_server')}"
            + (" with batching" if batching else ""))
        self.model = start_model_server(self.stack, self.model_command, self.model_base,
                                        self.logs / f"model-server-sweep{'-batching' if batching else ''}.log",
                                        flags, self._cpu("model_server"))
        log(f"sweep: model server gRPC :{self.model.grpc_port}, REST :{self.model.rest_port}")
        return self.model

    def _configuration(self, c: Configuration) -> dict:
        s = self.settings
        started = time.monotonic()
        model = self._model_server(c.model_server_batching)
        url = model.grpc_url if c.transport == "grpc" else model.rest_url
        service = start_service(self.stack, self.binary, url, self.work / f"service-{c.name}.log",
                                s.service_log_level, threads=1, flags=c.service_flags, cpu=self._cpu("service"))
        log(f"sweep: {c.title}: service on CPU {self._cpu('service')} at {service.base} (--threads 1, "
            f"--model-server {c.transport})")
        pids = {"service": service.proc.pid, "model_server": model.proc.pid}
        try:
            ceiling = None
            if s.ceiling_seconds > 0 and shutil.which("wrk"):
                try:
                    ceiling = wrk.run(service.base + c.path, BODY, s.ceiling_seconds, s.ceiling_connections,
                                      str(WRK_SCRIPT), self._cpu("generator"))
                    print(f"    closed-loop ceiling (wrk -c{s.ceiling_connections}): {ceiling['rps']:,.0f} req/s, "
                          f"p50 {_us(ceiling['p50_us'])}", flush=True)
                except RuntimeError as error:  # the sweep does not need it
                    log(f"sweep: {c.name}: no closed-loop ceiling: {error}")
                settle(pids.values())
            targets = self.work / f"targets-{c.name}.json"
            targets.write_text(json.dumps({"method": "POST", "url": service.base + c.path,
                                           "body": base64.b64encode(BODY.encode()).decode(),
                                           "header": {"Content-Type": ["application/json"]}}) + "\n")
            self._step(c, targets, pids, s.policy.start_rps, 1.0)  # warm-up, not kept
            settle(pids.values())
            done: list[plan.Step] = []
            while (rate := plan.next_rate(done, s.policy)) is not None:
                step = self._step(c, targets, pids, rate, s.step_seconds)
                step.verdict = plan.classify(step, s.policy)
                done.append(step)
                print(f"    {c.name} {rate:>8,.0f} req/s offered: {step.achieved_rps:>8,.0f} served, "
                      f"p50 {_us(step.p50_us)} p99 {_us(step.p99_us)} p99.9 {_us(step.p999_us)}, "
                      f"errors {step.errors}, CPU us/request service {_num(step.cpu_us_per_request('service'))} "
                      f"model server {_num(step.cpu_us_per_request('model_server'))}, generator "
                      f"{step.generator_cores or 0:.2f} cores: {step.verdict}", flush=True)
                settle(pids.values())
        finally:
            self.stack.stop_one(service.proc)
        knee = plan.find_knee(done)
        log(f"sweep: {c.name}: knee {_num(knee.rps)} req/s ({knee.limited_by} above it), "
            f"{len(done)} steps in {time.monotonic() - started:.0f} s")
        return {
            "name": c.name, "title": c.title, "path": c.path, "transport": c.transport,
            "service_flags": ["--threads", "1", *c.service_flags],
            "model_server_flags": ["--enable_batching", "--batching_parameters_file"]
            if c.model_server_batching else [],
            "batching_parameters": BATCHING_PARAMETERS if c.model_server_batching else None,
            "ceiling": ceiling,
            "steps": [st.to_dict() for st in done],
            "knee": {"rps": knee.rps, "limited_by": knee.limited_by, "lower_bound": knee.lower_bound},
        }

    def _step(self, c: Configuration, targets: Path, pids: dict[str, int], rate: float, seconds: float) -> plan.Step:
        s = self.settings
        raw, csv = self.work / "step.bin", self.work / "step.csv"
        argv = [s.vegeta, "attack", "-format=json", f"-targets={targets}", f"-rate={int(rate)}/1s",
                f"-duration={seconds}s", f"-timeout={s.timeout_s}s", f"-workers={s.workers}",
                f"-max-workers={s.workers}", "-max-body=4096", f"-output={raw}"]
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        began = time.monotonic()
        proc = self.stack.start("vegeta", argv, self.work / "vegeta.log", cpu=self._cpu("generator"))
        generator_cpu = wait_with_cpu(proc, seconds + s.timeout_s + 60)
        wall = time.monotonic() - began
        self.stack.forget(proc)
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        if proc.returncode != 0:
            raise RuntimeError(f"vegeta attack failed (exit {proc.returncode}): "
                               f"{(self.work / 'vegeta.log').read_text(errors='replace')[-500:]}")
        with open(csv, "wb") as out:  # a second or two; subprocess.run kills it on Ctrl-C
            encoded = subprocess.run([s.vegeta, "encode", "-to=csv", str(raw)], stdout=out, stderr=subprocess.PIPE,
                                     timeout=300)
        if encoded.returncode != 0:
            raise RuntimeError(f"vegeta encode failed: {encoded.stderr.decode(errors='replace')[-500:]}")
        sent, seq, latency, good, errors = read_results(csv, c.path.endswith("/model"))
        step = plan.summarize(rate, sent, seq, latency, good, s.warmup_s, s.workers)
        step.errors_by_message = errors
        step.wall_s = wall
        step.generator_cores = generator_cpu / wall if wall > 0 else None
        step.cpu_s = {name: after[name] - before[name] for name in pids}
        step.cpu_s["generator"] = generator_cpu
        raw.unlink(missing_ok=True)
        csv.unlink(missing_ok=True)
        return step


def settle(pids, timeout: float = 10.0, idle_cores: float = 0.05) -> None:
    """Waits (at most `timeout` s) until the processes are idle: less than `idle_cores` CPU each
    over 0.25 s, so one step's leftover work (a queue after an overload) does not spill into
    the next step's figures."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    previous = [cpu_seconds(p) for p in pids]
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = [cpu_seconds(p) for p in pids]
        if all((b - a) / 0.25 < idle_cores for a, b in zip(previous, now)):
            return
        previous = now


def _us(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f} us" if value < 1000 else f"{value / 1000:,.1f} ms"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"
