"""The local stack's processes: the model server, the service, and how they are started,
pinned to CPUs, measured and stopped.

The model server is launched in one place, `start_model_server`, from a `ModelServerCommand`
chosen in one place, `model_server_command`: `tensorflow_model_server` when it is on PATH,
else the stand-in `celsius-model-server` (C++, build/release/), or any binary given by path that
takes tensorflow_model_server's flags (`--port --rest_api_port --model_name
--model_base_path`, and for batching `--enable_batching --batching_parameters_file`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

LOADTEST_DIR = Path(__file__).resolve().parents[2]
REPO = LOADTEST_DIR.parent
MODEL_NAME = "f2c"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # units of utime/stime in /proc/<pid>/stat (proc(5))


def log(message: str) -> None:
    print(f"==> {message}", flush=True)


def repo_relative(path: Path | str) -> str:
    """`path` relative to the repository when it lies inside it, else its last component:
    what committed files name instead of machine paths."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return p.name


_MACHINE_PATH = re.compile(r"(?<![\w/.~-])/(?:work|root|home|tmp|var|opt|usr|mnt|srv|private|Users|builds?)/"
                           r"[^\s`'\")\]|,;]*")


def scrub_paths(text: str) -> str:
    """Machine paths out of text that gets committed (reports, run.json): the repository's own
    prefix removed (paths become repository-relative), any other absolute path under a machine
    directory shown as `<path>`. URL paths (after a host) and API paths (/convert) stay."""
    root = str(REPO)
    text = text.replace(root + "/", "").replace(root, ".")
    return _MACHINE_PATH.sub("<path>", text)


def scrub_logs(folder: Path, scratch: Path) -> list[Path]:
    """Every `*.log` in `folder` through `scrub_paths`, the scratch folder first shown as
    `<scratch>`, so the logs a run keeps can be committed (the model server logs the TensorFlow it
    loaded and its --model_base_path). The files changed."""
    changed = []
    for path in sorted(folder.glob("*.log")):
        original = path.read_text(errors="replace")
        text = scrub_paths(original.replace(str(scratch), "<scratch>"))
        if text != original:
            path.write_text(text)
            changed.append(path)
    return changed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """(status, body); status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen | None = None,
               log_path: Path | None = None) -> None:
    """Polls `check()` every 0.2 s; RuntimeError (with the log's tail) when `proc` exits first
    or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:] if log_path else ""
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}\n{tail}")
        time.sleep(0.2)
    raise RuntimeError(f"{what}: not ready within {timeout:.0f} s")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, all its threads (fields 14 and 15 of /proc/<pid>/stat,
    proc(5)), in seconds; resolution 1/CLK_TCK (10 ms on Linux)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_ids() -> list[int]:
    """The CPUs this process may run on, sorted."""
    return sorted(os.sched_getaffinity(0))


@dataclass
class Stack:
    """The processes of one run; stop() ends them all, newest first."""

    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], log_path: Path, env: dict | None = None,
              cpu: int | None = None) -> subprocess.Popen:
        """Starts `argv` in its own session (Ctrl-C reaches only the runner, which stops it),
        output to `log_path`; with `cpu`, pinned to that CPU (taskset execs the program, so the
        PID is the program's)."""
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu), *argv]
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                    start_new_session=True)
        self.processes.append((name, proc))
        return proc

    def stop_one(self, proc: subprocess.Popen) -> None:
        for name, p in list(self.processes):
            if p is proc:
                self._stop(name, p)
                self.processes.remove((name, p))

    def forget(self, proc: subprocess.Popen) -> None:
        """Drops a process that has exited on its own (reaped by `wait_with_cpu`)."""
        self.processes[:] = [(n, p) for n, p in self.processes if p is not proc]

    def stop(self) -> None:
        for name, proc in reversed(self.processes):
            self._stop(name, proc)
        self.processes.clear()

    @staticmethod
    def _stop(name: str, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop on SIGTERM; killing it")
                proc.kill()
                proc.wait()


def wait_with_cpu(proc: subprocess.Popen, timeout: float, on_tick=None) -> float:
    """Waits for a child to exit and returns the CPU seconds (user + system, all threads) it
    used, from the kernel's rusage of the reaped child (wait4(2)); `on_tick(elapsed)` is called
    about once a second while it runs. TimeoutError after `timeout` seconds (still running)."""
    started = time.monotonic()
    last_tick = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            raise TimeoutError(f"{proc.args[0]} still running after {timeout:.0f} s")
        if on_tick and int(elapsed) > last_tick:
            last_tick = int(elapsed)
            on_tick(last_tick)
        time.sleep(0.05)


def help_text(argv: list[str], env: dict | None = None) -> str:
    """What `argv --help` prints (stdout and stderr: tensorflow_model_server prints its flags on
    stderr), to detect which flags a binary has; empty when it cannot run."""
    try:
        done = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=180,
                              env={**os.environ, **(env or {})})
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr


@dataclass
class ModelServerCommand:
    """How to run a model server: argv prefix (flags follow), what it is, extra environment."""

    argv: list[str]
    description: str
    env: dict = field(default_factory=dict)
    _help: str | None = None

    def has_flags(self, *flags: str) -> bool:
        """Whether `--help` lists every one of `flags` (probed once)."""
        if self._help is None:
            self._help = help_text(self.argv, self.env)
        return all(flag in self._help for flag in flags)


MODEL_SERVER_CHOICES = ("auto", "stand-in", "tensorflow_model_server")  # else a path (model_server_command)


def executable_problem(option: str, path: str | None) -> str | None:
    """Why PATH, given as OPTION, cannot be run, as an error message, or None (no path given)."""
    if path is None or (Path(path).is_file() and os.access(path, os.X_OK)):
        return None
    return f"{option}: {path} is not an executable file"


def model_server_problem(choice: str) -> str | None:
    """Why `--model-server CHOICE` cannot be run on this machine, as an error message, or None.
    The stand-in is not checked: scripts/run.sh builds it after checking the options."""
    if choice == "tensorflow_model_server" and not shutil.which("tensorflow_model_server"):
        return "--model-server tensorflow_model_server: not on PATH (auto picks the stand-in then)"
    if choice in MODEL_SERVER_CHOICES:
        return None
    problem = executable_problem("--model-server", choice)
    return f"{problem}; nor one of {', '.join(MODEL_SERVER_CHOICES)}" if problem else None


def model_server_command(choice: str, python: str) -> ModelServerCommand:
    """The one place that picks the model server. `choice`: `auto` (tensorflow_model_server when
    on PATH, else the stand-in), `stand-in`, `tensorflow_model_server`, or a path to any binary
    with tensorflow_model_server's flags. RuntimeError: `model_server_problem`'s message, or the
    stand-in is not built."""
    problem = model_server_problem(choice)
    if problem:
        raise RuntimeError(problem)
    real = shutil.which("tensorflow_model_server")
    if choice == "tensorflow_model_server" or (choice == "auto" and real):
        return _binary(real, "tensorflow_model_server")
    if choice not in MODEL_SERVER_CHOICES:
        return _binary(str(Path(choice).resolve()), repo_relative(Path(choice)))
    binary = Path(os.environ.get("CELSIUS_MODEL_SERVER_BINARY", REPO / "build" / "release" / "celsius-model-server"))
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise RuntimeError(f"{repo_relative(binary)} is not built (cmake --preset release && "
                           "cmake --build --preset release --target celsius-model-server)")
    command = _binary(str(binary), "stand-in celsius-model-server")
    return ModelServerCommand([*command.argv, "--celsius_bind_address=127.0.0.1"], command.description,
                              {"TF_CPP_MIN_LOG_LEVEL": "2"})


def _binary(path: str, name: str) -> ModelServerCommand:
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
        first = (version.stdout or version.stderr).strip().splitlines()
    except (OSError, subprocess.TimeoutExpired):
        first = []
    return ModelServerCommand([path], f"{name} ({first[0] if first else 'unknown version'})")


@dataclass
class ModelServer:
    proc: subprocess.Popen
    grpc_port: int
    rest_port: int
    flags: tuple[str, ...]

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"


def start_model_server(stack: Stack, command: ModelServerCommand, model_base_path: Path, log_path: Path,
                       flags: tuple[str, ...] = (), cpu: int | None = None, timeout: float = 180) -> ModelServer:
    """Starts the model server on two free loopback ports with TF Serving's flags plus `flags`,
    and waits until the model's REST status says AVAILABLE (TF Serving opens its ports only
    after the first load; shared/TFSERVING.md)."""
    grpc_port, rest_port = free_port(), free_port()
    while rest_port == grpc_port:
        rest_port = free_port()
    argv = command.argv + [f"--port={grpc_port}", f"--rest_api_port={rest_port}", f"--model_name={MODEL_NAME}",
                           f"--model_base_path={model_base_path}", *flags]
    proc = stack.start("model server", argv, log_path, command.env, cpu)
    server = ModelServer(proc, grpc_port, rest_port, tuple(flags))
    wait_until(lambda: '"AVAILABLE"' in http_get(f"{server.rest_url}/v1/models/{MODEL_NAME}")[1], timeout,
               "model server", proc, log_path)
    return server


@dataclass
class Service:
    proc: subprocess.Popen
    base: str  # http://127.0.0.1:PORT


def start_service(stack: Stack, binary: Path, model_server_url: str, log_path: Path, log_level: str,
                  threads: int | None = None, flags: tuple[str, ...] = (), cpu: int | None = None,
                  port: int = 0) -> Service:
    """Starts celsius-server on loopback wired to `model_server_url` and waits until /readyz is 200
    and reports the model available (`"model":{"available":true}`: /readyz itself does not follow
    the model server, server/README.md)."""
    port = port or free_port()
    argv = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--log-level", log_level,
            "--model-server", model_server_url, *flags]
    if threads:
        argv += ["--threads", str(threads)]
    proc = stack.start("celsius-server", argv, log_path, cpu=cpu)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _model_ready(base), 60, "celsius-server /readyz with the model available", proc, log_path)
    return Service(proc, base)


def _model_ready(base: str) -> bool:
    status, body = http_get(base + "/readyz")
    if status != 200:
        return False
    try:
        return json.loads(body).get("model", {}).get("available") is True
    except (ValueError, AttributeError):
        return False
