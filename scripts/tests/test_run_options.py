"""scripts/run.sh refuses wrong options before it installs, builds or starts anything: the Python
job checks them first (`--check-options`), so a typo costs seconds, not a build or a cluster."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_SH = REPO / "scripts" / "run.sh"


@pytest.mark.parametrize(("argv", "message"), [
    (["--scenarios", "bogus"], "--scenarios: unknown ['bogus']"),
    (["--scenarios", "none", "--sweep", "none"], "nothing to run"),
    (["--users", "many"], "argument --users: invalid int value: 'many'"),
    (["--cluster", "--scenarios", "native,bogus"], "--scenarios: unknown ['bogus']"),
    (["--cluster", "--users", "0"], "--workers and --users must be at least 1"),
    (["--cluster", "--scenarios", "none"], "nothing to run"),
    (["--cluster", "--sweep", "all"], "unrecognized arguments: --sweep all"),
    # Each kind of number the jobs take, out of its range: refused as early as a wrong name.
    (["--users", "0"], "--users: must be at least 1"),
    (["--spawn-rate", "0"], "--spawn-rate: must be above 0"),
    (["--duration", "0s"], "--duration: must be at least 1 s"),
    (["--step-seconds", "0"], "--step-seconds: must be above 0"),
    (["--max-steps", "0"], "--max-steps: must be at least 1"),
    (["--ceiling-seconds", "-1"], "--ceiling-seconds: must be 0 (skip) or more"),
    (["--port", "99999"], "--port: must be a TCP port"),
    (["--scenarios", ""], "--scenarios: empty"),
    (["--cluster", "--spawn-rate", "0"], "--spawn-rate: must be above 0"),
    (["--cluster", "--sample-seconds", "0"], "--sample-seconds: must be above 0"),
    (["--cluster", "--celsius-set", "foo"], "--celsius-set: must be KEY=VALUE"),
    # A run stays inside --results, and never writes into an earlier run's folder (its report
    # would credit that run's numbers to this command).
    (["--run-id", "../elsewhere"], "--run-id: must be a plain folder name, not '../elsewhere'"),
    (["--run-id", ".."], "--run-id: must be a plain folder name"),
    (["--cluster", "--run-id", "a/b"], "--run-id: must be a plain folder name"),
    (["--results", str(REPO), "--run-id", "results"], "results exists already: choose another name"),
    (["--cluster", "--results", str(REPO), "--run-id", "results"], "results exists already"),
])
def test_wrong_options_are_refused_before_anything_is_built_or_started(argv, message):
    done = subprocess.run([str(RUN_SH), *argv], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    # Nothing of the job ran: no package step, image build, cluster, compile or Locust output.
    assert done.stdout == "", done.stdout
    for step in ("==>", "[cluster", "docker", "cmake", "Starting Locust"):
        assert step not in done.stderr, (step, done.stderr)
