"""scripts/run.sh refuses wrong options before it installs, builds or starts anything: the Python
job checks them first (`--check-options`), so a typo costs seconds, not a build or a cluster."""

from __future__ import annotations

import os
import re
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
    (["--cluster", "--users", "0"], "--users: must be at least 1"),
    (["--cluster", "--workers", "0"], "--workers: must be at least 1"),
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
    # Found by a fresh trial (stop 17): each was accepted here and failed only after the build
    # and, with --cluster, after the images and the cluster, or ran everything.
    (["--check-options"], "--check-options is for python -m celsius_loadtest"),
    (["--cluster", "--check-options"], "--check-options is for python -m celsius_loadtest"),
    (["--check"], "unrecognized arguments: --check"),  # no abbreviations: --check-options
    (["--cluster", "--he"], "unrecognized arguments: --he"),  # --help
    (["--service-log-level", "WARN"], "argument --service-log-level: invalid choice: 'WARN'"),
    (["--results", str(REPO / "README.md")], "README.md is not a folder"),
    (["--cluster", "--results", str(REPO / "README.md")], "README.md is not a folder"),
    (["--model-server", "stand_in"], "nor one of auto, stand-in, tensorflow_model_server"),
    (["--start-rate", "inf"], "argument --start-rate: not a finite number: 'inf'"),
    (["--cluster", "--settle", "nan"], "argument --settle: not a finite number: 'nan'"),
    (["--scenarios", ","], "--scenarios: empty"),
    (["--cluster", "--scenarios", ","], "--scenarios: empty"),
    (["--scenarios", "native,native"], "--scenarios: ['native'] given more than once"),
    (["--sweep", "native,native"], "--sweep: ['native'] given more than once"),
    (["--cluster", "--namespace", "Bad_NS"], "--namespace: must be a Kubernetes namespace name"),
    (["--cluster", "--namespace", "a" * 64], "--namespace: must be a Kubernetes namespace name"),
    (["--cluster", "--install-timeout", "foo"], "--install-timeout: must be a duration"),
    (["--cluster", "--celsius-set", "=x"], "--celsius-set: must be KEY=VALUE with a KEY"),
    (["--cluster", "--locust-set", " =x"], "--locust-set: must be KEY=VALUE with a KEY"),
    # Errors name the command that was typed.
    (["--users", "many"], "usage: scripts/run.sh "),
    (["--cluster", "--users", "many"], "usage: scripts/run.sh --cluster "),
    # --cluster is the cluster job wherever it stands among the options.
    (["--users", "many", "--cluster"], "usage: scripts/run.sh --cluster "),
    (["--down", "--cluster", "--workers", "0"], "--workers: must be at least 1"),
])
def test_wrong_options_are_refused_before_anything_is_built_or_started(argv, message):
    done = subprocess.run([str(RUN_SH), *argv], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    # As argparse words its own refusals: the command typed, then "error:".
    assert re.match(r"scripts/run\.sh( --cluster)?: error: ", done.stderr.splitlines()[-1]), done.stderr
    # Nothing of the job ran: no package step, image build, cluster, compile or Locust output.
    assert done.stdout == "", done.stdout
    for step in ("==>", "[cluster", "docker", "cmake", "Starting Locust"):
        assert step not in done.stderr, (step, done.stderr)


@pytest.mark.parametrize(("argv", "expected"), [
    (["--help"], ["usage: scripts/run.sh ", "scripts/run.sh --cluster [--down]",
                  "--ceiling-connections CEILING_CONNECTIONS", "--binary BINARY"]),
    (["--cluster", "--help"], ["usage: scripts/run.sh --cluster [-h] [--down]", "--down  ",
                               "scripts/run.sh --cluster only: take the cluster down"]),
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


def test_a_relative_results_folder_is_the_callers(tmp_path):
    """A relative --results means the caller's folder, where it was checked: run.sh builds in the
    repository but runs the job where it was called (it used to check the path from the caller's
    folder and then write into the repository's). The shortest real job: one 1 s native scenario
    with one user, no sweep (the build is current after the cpp stage; otherwise run.sh builds)."""
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    refused = subprocess.run([str(RUN_SH), "--results", "runs", "--run-id", "taken"], capture_output=True, text=True,
                             timeout=600, cwd=tmp_path)
    assert refused.returncode == 2 and "runs/taken exists already" in refused.stderr, refused.stdout + refused.stderr
    done = subprocess.run([str(RUN_SH), "--results", "runs", "--run-id", "here", "--scenarios", "native",
                           "--duration", "1s", "--users", "1", "--sweep", "none"],
                          capture_output=True, text=True, timeout=1800, cwd=tmp_path, env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "runs" / "here" / "native_stats.csv").is_file()
    assert (tmp_path / "runs" / "here" / "report.md").is_file()
    assert not (REPO / "runs").exists()
