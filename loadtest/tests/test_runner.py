"""The main job end to end, for real and short: the runner exports the model, starts the
model server (stand-in here) and the service, runs the three Locust scenarios for a few
seconds each, measures wrk ceilings, and writes the run folder with its report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

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
         "--ceiling-seconds", "1", "--results", str(results), "--run-id", "e2e", "--binary", str(SERVER_BINARY),
         "--model-server", "stand-in"],
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


@pytest.mark.skipif(not shutil.which("wrk"), reason="wrk not installed (scripts/install-deps.sh bench)")
def test_ceilings_measured_for_both_endpoints(run_dir):
    ceilings = json.loads((run_dir / "ceilings.json").read_text())
    for name in ("POST /convert", "POST /convert/model"):
        c = ceilings[name]
        assert c["rps"] > 0 and 0 < c["p50_us"] <= c["p99_us"] and c["errors"] == 0, (name, c)


def test_report_written_with_charts(run_dir):
    report = (run_dir / "report.md").read_text()
    for section in ("## Results per scenario and endpoint", "## TensorFlow Serving path against the native path",
                    "## Where the time goes", "## Failures"):
        assert section in report
    assert "| mixed | POST /convert/model |" in report
    for chart in ("latency_percentiles.png", "over_time.png"):
        assert (run_dir / chart).read_bytes()[:4] == b"\x89PNG"


def test_ctrl_c_stops_every_process_the_run_started(tmp_path):
    """Interrupted mid-scenario, the runner stops the model server, the service and Locust,
    and exits 130: nothing keeps listening on the ports it used."""
    import re
    import signal
    import socket
    import time

    if not SERVER_BINARY.exists():
        pytest.skip(f"{SERVER_BINARY} not built")
    env = {**os.environ, "PYTHONPATH": str(HERE / "src"), "MPLBACKEND": "Agg"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celsius_loadtest", "run", "--duration", "60s", "--users", "2", "--ceiling-seconds", "0",
         "--results", str(tmp_path), "--run-id", "interrupted", "--binary", str(SERVER_BINARY),
         "--model-server", "stand-in"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        lines.append(line)
        if "Locust scenario 'native'" in line or time.monotonic() > deadline:
            break
    text = "".join(lines)
    ports = [int(p) for p in re.findall(r"gRPC :(\d+), REST :(\d+)", text)[0]]
    ports.append(int(re.search(r"celsius-server on http://127\.0\.0\.1:(\d+)", text).group(1)))
    time.sleep(3)  # Locust is running
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, text + rest
    assert "stopped every process" in rest
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {port}"
