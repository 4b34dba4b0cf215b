"""The one wrk output parser, on real wrk 4.1 output captured here (fixtures/wrk: a normal run,
a run answered 404, a run whose requests all timed out)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from celsius_loadtest import wrk

FIXTURES = Path(__file__).parent / "fixtures" / "wrk"
SRC = Path(__file__).resolve().parents[1] / "src"


def test_normal_run():
    r = wrk.parse((FIXTURES / "ok.txt").read_text())
    assert (r["rps"], r["requests"]) == (35177.56, 35296)
    assert (r["p50_us"], r["p75_us"], r["p90_us"], r["p99_us"]) == (81.0, 1490.0, 2910.0, 22870.0)
    assert r["errors"] == 0 and set(r["socket_errors"].values()) == {0}


def test_non_2xx_answers_are_errors():
    r = wrk.parse((FIXTURES / "non2xx.txt").read_text())
    assert r["requests"] == r["errors"] == 35529


def test_socket_errors():
    r = wrk.parse((FIXTURES / "timeouts.txt").read_text())
    assert r["socket_errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 4}
    assert (r["requests"], r["rps"], r["p99_us"]) == (4, 1.31, 0.0)


@pytest.mark.parametrize(("text", "us"), [("87.00us", 87), ("1.25ms", 1250), ("2.00s", 2e6), ("1.50m", 90e6),
                                          ("1.00h", 3.6e9)])
def test_durations(text, us):
    assert wrk.duration_us(text) == pytest.approx(us)


def test_not_wrk_output():
    with pytest.raises(ValueError):
        wrk.parse("unable to connect to 127.0.0.1:1 Connection refused\n")
    with pytest.raises(ValueError):
        wrk.duration_us("12 parsecs")


def test_command_line_prints_json():
    done = subprocess.run([sys.executable, "-m", "celsius_loadtest.wrk", str(FIXTURES / "ok.txt")],
                          capture_output=True, text=True, env={"PYTHONPATH": str(SRC)}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["requests"] == 35296
    bad = subprocess.run([sys.executable, "-m", "celsius_loadtest.wrk", "/nonexistent"], capture_output=True,
                         text=True, env={"PYTHONPATH": str(SRC)}, timeout=60)
    assert bad.returncode == 1 and "error" in bad.stderr
