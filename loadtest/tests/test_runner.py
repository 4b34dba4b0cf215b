"""The main job end to end, for real and short: the runner exports the model, starts the
model server (stand-in here) and the service, runs the three Locust scenarios for a few
seconds each, then the capacity sweep (every configuration this checkout can run, at most 4
steps of 1 s each, a 1 s wrk ceiling each), and writes the run folder with its report.
Nothing here asserts a latency or a rate: on a busy machine any step may be out of bounds.
What is asserted is what must hold on any machine: the plan was followed, every request
was counted and checked, CPU was measured per process, the report has its parts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from celsius_loadtest import steps as plan
from celsius_loadtest import sweep

HERE = Path(__file__).resolve().parents[1]
REPO = HERE.parent
SERVER_BINARY = Path(os.environ.get("CELSIUS_SERVER_BINARY", REPO / "build/release/celsius-server"))
CSV_HEADERS = {
    "_stats.csv": ["Type", "Name", "Request Count", "Failure Count", "Median Response Time", "Requests/s"],
    "_stats_history.csv": ["Timestamp", "User Count", "Type", "Name", "Requests/s", "Total Request Count"],
    "_failures.csv": ["Method", "Name", "Error", "Occurrences"],
    "_exceptions.csv": ["Count", "Message", "Traceback", "Nodes"],
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    if not SERVER_BINARY.exists():
        pytest.skip(f"{SERVER_BINARY} not built")
    results = tmp_path_factory.mktemp("results")
    env = {**os.environ, "PYTHONPATH": str(HERE / "src"), "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, "-m", "celsius_loadtest", "run", "--duration", "4s", "--users", "4",
         "--step-seconds", "1", "--max-steps", "4", "--ceiling-seconds", "1",
         "--results", str(results), "--run-id", "e2e", "--binary", str(SERVER_BINARY), "--model-server", "stand-in"],
        capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return results / "e2e"


@pytest.mark.parametrize("scenario", ["native", "model", "mixed"])
def test_every_scenario_keeps_locusts_four_csv_files_and_html(run_dir, scenario):
    for suffix, header in CSV_HEADERS.items():
        columns = pd.read_csv(run_dir / f"{scenario}{suffix}", nrows=0).columns.tolist()
        assert all(name in columns for name in header), (suffix, columns)
    assert (run_dir / f"{scenario}.html").stat().st_size > 1000


def requests_by_endpoint(run_dir: Path, scenario: str) -> dict[str, tuple[int, int]]:
    stats = pd.read_csv(run_dir / f"{scenario}_stats.csv")
    return {row["Name"]: (row["Request Count"], row["Failure Count"]) for _, row in stats.iterrows()}


def test_each_scenario_hits_its_endpoints_without_failures(run_dir):
    native = requests_by_endpoint(run_dir, "native")
    model = requests_by_endpoint(run_dir, "model")
    mixed = requests_by_endpoint(run_dir, "mixed")
    assert set(native) == {"/convert", "Aggregated"}
    assert set(model) == {"/convert/model", "Aggregated"}
    assert set(mixed) == {"/convert", "/convert/model", "Aggregated"}
    for counts in (native, model, mixed):
        for name, (requests, failures) in counts.items():
            assert requests > 0 and failures == 0, (name, requests, failures)


def test_run_json_names_parameters_machine_and_versions(run_dir):
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["scenarios"] == ["native", "model", "mixed"]
    assert (meta["users"], meta["spawn_rate"], meta["duration_s"]) == (4, 4, 4)
    assert meta["machine"]["cores"] >= 1 and meta["machine"]["cpu"]
    assert meta["versions"]["tensorflow"] and meta["versions"]["locust"].startswith("locust ")
    assert meta["versions"]["model_server"].startswith("stand-in")
    assert len(meta["git_commit"]) == 40


def test_run_json_records_what_locust_and_the_stack_used(run_dir):
    meta = json.loads((run_dir / "run.json").read_text())
    for scenario in ("native", "model", "mixed"):
        cpu = meta["locust_cpu"][scenario]
        assert cpu["wall_s"] >= 4 and cpu["locust_cpu_s"] > 0 and cpu["service_cpu_s"] > 0, (scenario, cpu)
    assert meta["locust_cpu"]["model"]["model_server_cpu_s"] > 0
    assert meta["versions"]["load_generator"].startswith("vegeta ")
    assert meta["sweep"]["max_steps"] == 4


def test_no_machine_paths_in_the_files_a_run_commits(run_dir):
    """The runner was given absolute paths (--results, --binary) and ran its servers from a scratch
    folder: none reaches run.json, sweep.json, sweep.csv, report.md or the logs it keeps (the
    model server logs where TensorFlow came from and its --model_base_path)."""
    logs = sorted(run_dir.glob("*.log"))
    assert "model-server.log" in {p.name for p in logs}
    assert "<scratch>/f2c" in (run_dir / "model-server.log").read_text()  # its base path, as a placeholder
    for name in ("run.json", "sweep.json", "sweep.csv", "report.md", *(p.name for p in logs)):
        text = (run_dir / name).read_text()
        for machine_path in (str(REPO), str(run_dir.parent), "/tmp/"):
            assert machine_path not in text, (name, machine_path)


@pytest.fixture(scope="module")
def swept(run_dir) -> dict:
    return json.loads((run_dir / "sweep.json").read_text())


def test_every_configuration_is_measured_or_named_with_a_reason(swept):
    measured = [c["name"] for c in swept["configurations"]]
    skipped = {s["name"]: s["reason"] for s in swept["skipped"]}
    assert {"native", "model-grpc", "model-rest"} <= set(measured)
    assert sorted(measured + list(skipped)) == sorted(sweep.CONFIGURATION_NAMES)
    assert all(reason for reason in skipped.values())


def test_each_configuration_followed_the_plan(swept):
    """The rates offered are exactly those the plan gives for the verdicts seen, starting at the
    start rate, and the plan had nothing more to offer when the configuration ended."""
    policy = plan.Policy(**swept["policy"])
    for c in swept["configurations"]:
        done = [plan.Step.from_dict(s) for s in c["steps"]]
        assert 1 <= len(done) <= 4 and done[0].offered_rps == policy.start_rps
        for i, step in enumerate(done):
            assert plan.next_rate(done[:i], policy) == step.offered_rps, (c["name"], i)
            assert step.verdict == plan.classify(step, policy)
        assert plan.next_rate(done, policy) is None, c["name"]
        assert c["knee"]["rps"] == plan.find_knee(done).rps


def test_every_request_is_counted_checked_and_costed(swept):
    for c in swept["configurations"]:
        done = [plan.Step.from_dict(s) for s in c["steps"]]
        for step in done:
            assert step.requests > 0 and 0 <= step.errors <= step.requests
            assert not any(m.startswith("wrong answer") for m in step.errors_by_message), step.errors_by_message
            assert sum(step.errors_by_message.values()) == step.errors
            assert set(step.cpu_s) == {"service", "model_server", "generator"} and min(step.cpu_s.values()) >= 0
            assert step.measured > 0 and step.p50_us <= step.p99_us <= step.p999_us <= step.max_us
        assert any(s.requests > s.errors for s in done), c["name"]  # some right answers
        assert sum(s.cpu_s["service"] for s in done) > 0 and sum(s.cpu_s["generator"] for s in done) > 0
        if c["path"] == "/convert/model":  # the model path keeps the model server busy; native does not use it
            assert sum(s.cpu_s["model_server"] for s in done) > 0
    if shutil.which("wrk"):
        assert all(c["ceiling"]["rps"] > 0 for c in swept["configurations"])


def test_sweep_csv_has_a_row_per_step(run_dir, swept):
    rows = pd.read_csv(run_dir / "sweep.csv")
    assert len(rows) == sum(len(c["steps"]) for c in swept["configurations"])
    assert {"configuration", "offered_rps", "p99_us", "p999_us", "service_cpu_us_per_request",
            "model_server_cpu_us_per_request", "verdict"} <= set(rows.columns)


@pytest.mark.parametrize(("phase", "options", "started"), [
    ("locust", ["--duration", "60s", "--users", "2", "--sweep", "none"], "Locust scenario 'native'"),
    ("sweep", ["--scenarios", "none", "--step-seconds", "30", "--ceiling-seconds", "0", "--sweep", "native"],
     "sweep: native (POST /convert): service on"),
])
def test_ctrl_c_stops_every_process_the_run_started(tmp_path, phase, options, started):
    """Interrupted in a Locust scenario or in a sweep step, the runner stops the model server,
    the service, Locust or vegeta, and exits 130: nothing keeps listening on the ports it used,
    no process it started is left (none names its scratch folder on its command line)."""
    import re
    import signal
    import socket
    import time

    if not SERVER_BINARY.exists():
        pytest.skip(f"{SERVER_BINARY} not built")
    env = {**os.environ, "PYTHONPATH": str(HERE / "src"), "MPLBACKEND": "Agg"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celsius_loadtest", "run", *options, "--results", str(tmp_path), "--run-id", phase,
         "--binary", str(SERVER_BINARY), "--model-server", "stand-in"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        # SIGINT at its default action in the child, as from a terminal: Python turns it into
        # KeyboardInterrupt only when it was not ignored at start, and a shell without job
        # control starts background commands (a CI runner's, say) with SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        lines.append(line)
        if started in line or time.monotonic() > deadline:
            break
    text = "".join(lines)
    scratch = re.search(r"scratch folder (\S+)", text).group(1)
    ports = [int(p) for p in re.findall(r"gRPC :(\d+), REST :(\d+)", text)[0]]
    ports.append(int(re.search(r"(?:celsius-server on|at) http://127\.0\.0\.1:(\d+)", text).group(1)))
    time.sleep(3)  # Locust or vegeta is running
    children = [p for p in Path("/proc").glob("[0-9]*") if scratch in _cmdline(p)]
    assert phase != "sweep" or any("vegeta" in _cmdline(p) for p in children), "vegeta was not running"
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, text + rest
    assert "stopped every process" in rest
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {port}"
    left = [_cmdline(p) for p in Path("/proc").glob("[0-9]*") if scratch in _cmdline(p)]
    assert not left, left


def _cmdline(proc_dir: Path) -> str:
    try:
        return (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
