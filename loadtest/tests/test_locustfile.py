"""The locustfile with real Locust: a short headless run against the real service, and a
run against a deliberately wrong server to prove the answer checks can fail."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from celsius_loadtest.report import write_report

HERE = Path(__file__).resolve().parents[1]
REPO = HERE.parent
SERVER_BINARY = Path(os.environ.get("CELSIUS_SERVER_BINARY", REPO / "build/release/celsius-server"))
LOCUST = Path(sys.executable).with_name("locust")
STATS_HEADER = ["Type", "Name", "Request Count", "Failure Count", "Median Response Time"]


def run_locust(host: str, csv_prefix: Path, tags: str, seconds: int = 3, extra: tuple[str, ...] = ()):
    return subprocess.run(
        [str(LOCUST), "--config", str(HERE / "locust.conf"), "-f", str(HERE / "locustfile.py"), "--host", host,
         "--users", "4", "--spawn-rate", "4", "--run-time", f"{seconds}s", "--tags", tags,
         "--csv", str(csv_prefix), "--csv-full-history", *extra],
        capture_output=True, text=True, timeout=120, cwd=HERE)


@pytest.fixture(scope="module")
def service():
    if not SERVER_BINARY.exists():
        pytest.skip(f"{SERVER_BINARY} not built")
    proc = subprocess.Popen([str(SERVER_BINARY), "--host", "127.0.0.1", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    found = threading.Event()
    port: list[int] = []

    def read() -> None:
        for line in proc.stdout:
            if not port and (m := re.search(r'"msg":"listening".*"port":(\d+)', line)):
                port.append(int(m.group(1)))
                found.set()

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(20), "service did not start"
    yield f"http://127.0.0.1:{port[0]}"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0


def test_native_run_against_the_real_service(service, tmp_path):
    result = run_locust(service, tmp_path / "native", "native", extra=("--batch-share", "0.5"))
    assert result.returncode == 0, result.stderr[-2000:]
    for suffix in ("stats", "stats_history", "failures", "exceptions"):
        assert (tmp_path / f"native_{suffix}.csv").exists(), suffix
    stats = pd.read_csv(tmp_path / "native_stats.csv")
    assert list(stats.columns[:5]) == STATS_HEADER
    row = stats[stats["Name"] == "/convert"].iloc[0]
    assert row["Request Count"] > 100
    assert row["Failure Count"] == 0
    assert "/convert/model" not in set(stats["Name"]), "the native tag must not hit the model endpoint"
    report = write_report(tmp_path)
    assert "| native | POST /convert |" in report.read_text()


class WrongServer(BaseHTTPRequestHandler):
    """Answers /convert with a plausible but wrong Celsius value."""

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        f = body["fahrenheit"]
        wrong = [x + 1 for x in f] if isinstance(f, list) else f + 1  # "celsius" off by far
        out = json.dumps({"fahrenheit": f, "celsius": wrong, "app_id": "00000000-0000-4000-8000-000000000000"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args) -> None:
        pass


def test_wrong_answers_are_failures(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), WrongServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = run_locust(f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "wrong", "native", seconds=2)
    finally:
        server.shutdown()
    assert result.returncode == 1, "Locust exits 1 when requests failed"
    stats = pd.read_csv(tmp_path / "wrong_stats.csv")
    row = stats[stats["Name"] == "/convert"].iloc[0]
    assert row["Request Count"] > 0 and row["Failure Count"] == row["Request Count"]
    failures = pd.read_csv(tmp_path / "wrong_failures.csv")
    assert failures["Error"].str.contains("wrong answer").all()


def test_check_answer_rules():
    sys.path.insert(0, str(HERE))
    from answer_checks import check_answer, expected_celsius

    ok = {"fahrenheit": 212.0, "celsius": 100.0, "app_id": "0f1e2d3c-4b5a-4968-8776-655443322110"}
    assert check_answer(ok, 212.0, False, False) is None
    assert "wrong answer" in check_answer(dict(ok, celsius=100.1), 212.0, False, False)
    assert "UUIDv4" in check_answer(dict(ok, app_id="x"), 212.0, False, False)
    assert "model" in check_answer(ok, 212.0, False, True)
    batch = {"fahrenheit": [32.0, 98.6], "celsius": [0.0, expected_celsius(98.6)], "app_id": ok["app_id"]}
    assert check_answer(batch, [32.0, 98.6], True, False) is None
    assert "shape" in check_answer(batch, 32.0, False, False)
