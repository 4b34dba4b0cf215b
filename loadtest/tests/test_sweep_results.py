"""Reading vegeta's results (`sweep.read_results`) on a CSV in the layout `vegeta encode -to=csv`
writes (v12.13: no header; body and headers base64), and which configurations a checkout can
run (`sweep.skip_reason`) for model servers and services whose --help lists the flags or not."""

from __future__ import annotations

import base64
import csv
import json
import sys
from pathlib import Path

import pytest

from celsius_loadtest import sweep

APP_ID = "a236891f-bb04-4e91-bb2f-cecd62f55c6d"
RIGHT = {"fahrenheit": 98.6, "celsius": 37, "app_id": APP_ID}  # as the real service answers 98.6 F
NGINX = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>|</body>\r\n</html>\r\n"


def write_results(path: Path, rows: list[tuple[int, int, str, object]]) -> None:
    """rows: (sequence, HTTP status, transport error, answer: dict (as JSON) or str (as is))."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        for seq, code, error, answer in rows:
            body = json.dumps(answer) if isinstance(answer, dict) else answer
            writer.writerow([1_700_000_000_000_000_000 + seq * 1_000_000, code, 100_000 + seq, 20, len(body), error,
                             base64.b64encode(body.encode()).decode(), "", seq, "POST",
                             "http://127.0.0.1:1/convert", ""])


def test_every_request_is_judged(tmp_path):
    rows = [
        (0, 200, "", RIGHT),
        (1, 200, "", {**RIGHT, "celsius": 37.5}),
        (2, 502, "", NGINX),
        (3, 0, "Post \"http://127.0.0.1:1/convert\": dial tcp 127.0.0.1:1: connect: connection refused", ""),
        (4, 200, "", "not json"),
        (5, 200, "", RIGHT),
        (6, 502, "", NGINX),
    ]
    write_results(tmp_path / "r.csv", rows)
    sent, seq, latency, good, errors = sweep.read_results(tmp_path / "r.csv", want_model=False)
    assert list(seq) == list(range(7))
    assert list(sent - sent[0]) == [i * 1_000_000 for i in range(7)]
    assert list(latency) == [100_000 + i for i in range(7)]
    assert list(good) == [True, False, False, False, False, True, False]
    assert errors[f"HTTP 502: {NGINX}"] == 2
    assert errors["wrong answer: wrong answer for f=98.6: celsius=37.5, expected 37.0"] == 1
    assert errors['Post "http://127.0.0.1:1/convert": dial tcp 127.0.0.1:1: connect: connection refused'] == 1
    assert sum(errors.values()) == 5 and len(errors) == 4
    assert errors["wrong answer: answer is not JSON: Expecting value: line 1 column 1 (char 0)"] == 1


def test_the_model_path_needs_the_models_name_and_version(tmp_path):
    write_results(tmp_path / "r.csv", [(0, 200, "", RIGHT), (1, 200, "", {**RIGHT, "model": {"name": "f2c",
                                                                                             "version": "1"}})])
    _, _, _, good, errors = sweep.read_results(tmp_path / "r.csv", want_model=True)
    assert list(good) == [False, True]
    assert errors == {"wrong answer: no model name/version in the answer": 1}


def test_many_distinct_messages_keep_their_total(tmp_path):
    write_results(tmp_path / "r.csv", [(i, 500, "", f"error number {i}") for i in range(30)])
    _, _, _, good, errors = sweep.read_results(tmp_path / "r.csv", want_model=False)
    assert not good.any()
    assert len(errors) == sweep.MAX_MESSAGES and sum(errors.values()) == 30
    assert errors["(11 other messages)"] == 11


def test_no_results(tmp_path):
    (tmp_path / "r.csv").write_text("")
    sent, _, _, good, errors = sweep.read_results(tmp_path / "r.csv", want_model=False)
    assert len(sent) == len(good) == 0 and errors == {}


def program_printing(tmp_path: Path, text: str) -> list[str]:
    """A real program whose --help prints `text` (as a model server's or service's would)."""
    script = tmp_path / "help.py"
    script.write_text(f"import sys\nprint({text!r}, file=sys.stderr)\n")
    return [sys.executable, str(script)]


@pytest.mark.parametrize(("help_text", "runnable"), [
    ("  --enable_batching (bool)\n  --batching_parameters_file (string)\n", True),
    ("  --enable_batching (bool)\n", False),
    ("usage: python -m celsius_model serve [--port PORT]\n", False),
])
def test_model_server_batching_needs_both_flags(tmp_path, help_text, runnable):
    command = sweep.ModelServerCommand(program_printing(tmp_path, help_text), "a model server")
    # the service's coalescing is turned off in this configuration: its flag must exist
    reason = sweep.skip_reason(sweep.CONFIGURATIONS[3], command, "--model-batch-max-values N")
    assert (reason is None) == runnable
    if reason:
        assert "--enable_batching and --batching_parameters_file" in reason and "a model server" in reason


def test_service_coalescing_needs_its_three_flags():
    coalescing = next(c for c in sweep.CONFIGURATIONS if c.name == "service-coalescing")
    command = sweep.ModelServerCommand(["true"], "x")
    full = "--model-batch-max-values N --model-batch-timeout-us N --model-batch-max-inflight N"
    assert sweep.skip_reason(coalescing, command, full) is None
    assert sweep.skip_reason(coalescing, command, "--model-batch-max-values N") == (
        "celsius-server does not list --model-batch-timeout-us, --model-batch-max-inflight in its --help")
    assert sweep.skip_reason(sweep.CONFIGURATIONS[0], command, "") is None  # native needs nothing
    unbatched = next(c for c in sweep.CONFIGURATIONS if c.name == "model-grpc")
    assert unbatched.service_flags == ("--model-batch-max-values", "0")  # coalescing is on by default
    assert sweep.skip_reason(unbatched, command, "") == "celsius-server does not list --model-batch-max-values in its --help"


def test_find_vegeta_takes_the_given_binary_or_none_never_another(tmp_path):
    given = tmp_path / "vegeta"
    given.write_text("#!/bin/sh\n")
    given.chmod(0o755)
    assert sweep.find_vegeta(str(given)) == str(given)
    # A given path that is not there is not replaced by .tools/bin/vegeta or PATH's.
    assert sweep.find_vegeta(str(tmp_path / "missing")) is None
