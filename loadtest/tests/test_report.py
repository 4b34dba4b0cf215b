"""The report generator on hand-made Locust CSV files whose numbers were worked out by hand.

fixtures/run holds four scenarios in Locust 2.47's layout: native (1,000 POST /convert at
100 req/s, p50 1 ms, p95 3, p99 5, max 9), model (500 POST /convert/model at 50 req/s, 5
failures, p50 4, p95 8, p99 12, max 30; failures file in the 2.44+ layout), mixed (both
endpoints; failures file in the older layout without First/Last Seen) and empty (no requests).
Expected ratios model/native: req/s 50/100 = 0.50x, p50 4/1 = 4.00x, p99 12/5 = 2.40x.
"""

from __future__ import annotations

import json

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from celsius_loadtest.report import load_run, model_over_native, read_failures, render_markdown, write_report

FIXTURE = Path(__file__).parent / "fixtures" / "run"
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture()
def run_dir(tmp_path) -> Path:
    target = tmp_path / "20261126-140000"
    shutil.copytree(FIXTURE, target)
    return target


def test_scenarios_in_report_order(run_dir):
    assert [s.name for s in load_run(run_dir).scenarios] == ["native", "model", "mixed", "empty"]


def test_stats_are_read_by_header_name(run_dir):
    native = load_run(run_dir).scenarios[0].endpoint("/convert")
    assert native["requests"] == 1000 and native["failures"] == 0
    assert native["rps"] == 100.0
    assert (native["p50_ms"], native["p95_ms"], native["p99_ms"], native["max_ms"]) == (1, 3, 5, 9)


def test_both_failures_layouts(run_dir):
    new = read_failures(run_dir / "model_failures.csv")
    old = read_failures(run_dir / "mixed_failures.csv")
    assert list(new.columns) == list(old.columns) == ["method", "name", "error", "occurrences"]
    assert new.iloc[0].to_dict() == {"method": "POST", "name": "/convert/model", "error": "HTTPError(503)",
                                     "occurrences": 5}
    assert old.iloc[0].to_dict() == {"method": "POST", "name": "/convert/model", "error": "timeout",
                                     "occurrences": 2}


def test_history_keeps_the_aggregated_series(run_dir):
    history = load_run(run_dir).scenarios[0].history
    assert list(history["seconds"]) == [0, 1, 2]
    assert list(history["rps"]) == [0.0, 90.0, 100.0]
    assert history["p95_ms"].isna().tolist() == [True, False, False]


def test_ratios(run_dir):
    ratios = model_over_native(load_run(run_dir))
    assert ratios.rps == pytest.approx(0.5)
    assert ratios.p50 == pytest.approx(4.0)
    assert ratios.p99 == pytest.approx(2.4)


def test_ratios_missing_scenario(run_dir):
    (run_dir / "model_stats.csv").unlink()
    ratios = model_over_native(load_run(run_dir))
    assert (ratios.rps, ratios.p50, ratios.p99) == (None, None, None)


def test_markdown(run_dir):
    text = render_markdown(load_run(run_dir), ["latency_percentiles.png"])
    assert "| native | POST /convert | 1,000 | 0 | 100.0 | 1 | 3 | 5 | 9 |" in text
    assert "| model | POST /convert/model | 500 | 5 | 50.0 | 4 | 8 | 12 | 30 |" in text
    assert "| mixed | POST /convert/model | 300 | 2 | 30.0 | 4 | 7 | 11 | 25 |" in text
    assert "| empty | (no requests) | - | - | - | - | - | - | - |" in text
    assert "| 0.50x | 4.00x | 2.40x |" in text
    assert "| model | POST /convert/model | HTTPError(503) | 5 |" in text
    assert "| mixed | POST /convert/model | timeout | 2 |" in text
    assert "![latency_percentiles](latency_percentiles.png)" in text


def test_run_metadata(run_dir):
    (run_dir / "run.json").write_text(json.dumps({
        "users": 16, "machine": {"cpu": "Test CPU", "cores": 2},
        "versions": {"model_server": "stand-in", "tensorflow": "2.21.0"}}))
    text = render_markdown(load_run(run_dir), [])
    assert "- **users**: 16" in text
    assert '"model\\_server": "stand-in"' in text  # the underscore escaped: shown as written


def test_locust_limits_from_the_runs_own_figures(run_dir):
    """native: 1,000 requests at 100 req/s; Locust used 5 CPU s in 10 s of wall time = 0.50
    cores, 5,000 us per request; the service 0.1 s = 100 us per request."""
    (run_dir / "run.json").write_text(json.dumps({"locust_cpu": {"native": {
        "wall_s": 10, "locust_cpu_s": 5.0, "service_cpu_s": 0.1, "model_server_cpu_s": 0.0}}}))
    text = render_markdown(load_run(run_dir), [])
    assert ("- `native`: Locust drove 100 req/s on `/convert` and used 0.50 CPU cores for it (5.00 ms of Locust "
            "CPU per request, against 100 us in the service).") in text
    assert "closed loop" in text


def test_write_report_makes_charts(run_dir):
    out = write_report(run_dir)
    assert out == run_dir / "report.md"
    for chart in ("latency_percentiles.png", "over_time.png"):
        png = run_dir / chart
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({chart})" in out.read_text()


def test_command_line(run_dir, tmp_path):
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}
    ok = subprocess.run([sys.executable, "-m", "celsius_loadtest", "report", str(run_dir)],
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert (run_dir / "report.md").exists()
    missing = subprocess.run([sys.executable, "-m", "celsius_loadtest", "report", str(tmp_path / "nothing")],
                             capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode == 2 and "no Locust" in missing.stderr and "no sweep.json" in missing.stderr
