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
])
def test_wrong_options_are_refused_before_anything_is_built_or_started(argv, message):
    done = subprocess.run([str(RUN_SH), *argv], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    # Nothing of the job ran: no package step, image build, cluster, compile or Locust output.
    assert done.stdout == "", done.stdout
    for step in ("==>", "[cluster", "docker", "cmake", "Starting Locust"):
        assert step not in done.stderr, (step, done.stderr)
