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
    # A program named by path is checked before the build, and never silently replaced by
    # another (a missing --vegeta used to fall back to .tools/bin/vegeta).
    (["--model-server", "/no/such/model-server"], "--model-server: /no/such/model-server is not an executable file"),
    (["--vegeta", "/no/such/vegeta"], "--vegeta: /no/such/vegeta is not an executable file"),
    (["--binary", str(REPO / "README.md")], "README.md is not an executable file"),
    # Errors name the command that was typed.
    (["--users", "many"], "usage: scripts/run.sh "),
    (["--cluster", "--users", "many"], "usage: scripts/run.sh --cluster "),
])
def test_wrong_options_are_refused_before_anything_is_built_or_started(argv, message):
    done = subprocess.run([str(RUN_SH), *argv], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    # Nothing of the job ran: no package step, image build, cluster, compile or Locust output.
    assert done.stdout == "", done.stdout
    for step in ("==>", "[cluster", "docker", "cmake", "Starting Locust"):
        assert step not in done.stderr, (step, done.stderr)


@pytest.mark.parametrize(("argv", "expected"), [
    (["--help"], ["usage: scripts/run.sh ", "scripts/run.sh --cluster [--down]",
                  "--ceiling-connections CEILING_CONNECTIONS", "--binary BINARY"]),
    (["--cluster", "--help"], ["usage: scripts/run.sh --cluster ", "scripts/run.sh --cluster only:\n  --down  "]),
])
def test_help_names_the_script_and_every_option(argv, expected):
    done = subprocess.run([str(RUN_SH), *argv], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    for text in expected:
        assert text in done.stdout, (text, done.stdout)
    # Every option has a help text: argparse puts it after the option on the same line, or on
    # the next line, indented; an option without one stands alone.
    lines = done.stdout.splitlines()
    bare = [line.strip() for line, after in zip(lines, [*lines[1:], ""])
            if line.strip().startswith("-") and "  " not in line.strip()
            and not (after.startswith(" " * 8) and not after.strip().startswith("-"))]
    assert not bare, bare
