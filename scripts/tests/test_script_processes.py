"""Scripts that start processes stop every one of them, on every exit path.

Each script in SCRIPTS runs briefly in a new session (so everything it starts, however
deep, shares the script's session id unless it detaches on purpose), three ways: to the
end, and interrupted with SIGINT and with SIGTERM once the processes it starts are
running. Afterwards no process of that session may be left. To cover another script, add
an entry to SCRIPTS.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Script:
    name: str
    argv: list[str]
    # Interrupt once a process with this name (/proc/PID/comm) runs in the session.
    running: str
    tools: list[str] = field(default_factory=list)
    needs_venv: bool = False
    timeout: float = 600


SCRIPTS = [
    Script("http-bench", ["server/bench/http-bench.sh", "--duration", "1", "--rounds", "1"],
           running="wrk", tools=["wrk", "nginx", "taskset", "curl"]),
    Script("model-bench", ["server/bench/model-bench.sh", "--duration", "1", "--rounds", "1"],
           running="wrk", tools=["wrk", "taskset", "curl"], needs_venv=True),
]


def interruptible() -> None:
    """In the child before exec: SIGINT and SIGQUIT back to their default action. A shell without
    job control starts background commands with both ignored (POSIX 2.11, "Signals and Error
    Handling"), and an ignored signal stays ignored across exec, where a script can no longer
    trap it (bash: "Signals ignored upon entry to the shell cannot be trapped or reset"); a
    test suite started that way must still deliver Ctrl-C as a terminal would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def session_processes(sid: int) -> list[tuple[int, str]]:
    """(pid, comm) of every live process whose session id is `sid` (zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append((int(entry.name), comm))
    return found


def left_over(sid: int, grace: float = 5) -> list[tuple[int, str]]:
    deadline = time.monotonic() + grace
    while (alive := session_processes(sid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def kill_session(sid: int) -> None:
    for pid, _ in session_processes(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def check_prerequisites(script: Script) -> None:
    missing = [t for t in script.tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing {missing}: scripts/install-deps.sh bench")
    if script.needs_venv and not (REPO / ".venv" / "bin" / "python").exists() and "CELSIUS_PYTHON" not in os.environ:
        pytest.skip("no project Python (.venv): scripts/python-env.sh")
    if not (REPO / "build" / "release" / "celsius-server").exists():
        pytest.skip("no release build: cmake --preset release && cmake --build --preset release")


@pytest.mark.parametrize("how", ["completes", "SIGINT", "SIGTERM"])
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_nothing_the_script_started_is_left(script: Script, how: str, tmp_path: Path) -> None:
    check_prerequisites(script)
    log = tmp_path / "output.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(script.argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=interruptible)
    sid = proc.pid
    try:
        if how == "completes":
            rc = proc.wait(timeout=script.timeout)
            assert rc == 0, f"{script.name} failed:\n{log.read_text()[-4000:]}"
        else:
            deadline = time.monotonic() + script.timeout
            while not any(comm == script.running for _, comm in session_processes(sid)):
                assert proc.poll() is None, f"{script.name} ended before '{script.running}' ran:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"'{script.running}' never ran"
                time.sleep(0.05)
            started = {comm for _, comm in session_processes(sid)}
            proc.send_signal(getattr(signal, how))
            proc.wait(timeout=60)
            assert proc.returncode != 0, "an interrupted script must not report success"
            assert len(started) > 2, f"expected the script's processes to be running, saw {started}"
        alive = left_over(sid)
        assert not alive, f"{script.name} ({how}) left {alive}:\n{log.read_text()[-4000:]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_session(sid)
