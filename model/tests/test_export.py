"""The exported SavedModel: layout, TensorFlow's own CLI, and bit-identical results."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from celsius_model import export, reference_celsius

REPO = Path(__file__).resolve().parents[2]
SERVER_BINARY = Path(os.environ.get("CELSIUS_SERVER_BINARY", REPO / "build/release/celsius-server"))
ABSOLUTE_ZERO = -459.67


@pytest.fixture(scope="module")
def serving_fn(model_base):
    loaded = tf.saved_model.load(str(model_base / "1"))
    fn = loaded.signatures["serving_default"]
    return lambda values: fn(fahrenheit=tf.constant(values, dtype=tf.float64))["celsius"].numpy()


def largest_valid_fahrenheit() -> float:
    """The largest f whose (f - 32) * 5 is still finite (the service rejects larger)."""
    lo, hi = 1e307, np.finfo(np.float64).max
    with np.errstate(over="ignore"):
        while np.nextafter(lo, hi) != hi:
            mid = lo + (hi - lo) / 2
            if mid in (lo, hi):
                break
            if np.isfinite((mid - 32.0) * 5.0):
                lo = mid
            else:
                hi = mid
        while np.isfinite((np.nextafter(lo, np.inf) - 32.0) * 5.0):
            lo = np.nextafter(lo, np.inf)
    return float(lo)


def sample_values() -> np.ndarray:
    """More than 100,000 valid inputs: edges, realistic temperatures, every exponent."""
    rng = np.random.default_rng(20261126)
    tiny = np.finfo(np.float64).smallest_subnormal
    edges = [ABSOLUTE_ZERO, -0.0, 0.0, tiny, -tiny, np.finfo(np.float64).tiny, 32.0, 212.0, -40.0, 98.6,
             0.1, 1e-300, -1e-300, 1e300, largest_valid_fahrenheit()]
    realistic = rng.uniform(ABSOLUTE_ZERO, 1000.0, 40_000)
    integers = np.arange(-459, 20_000, dtype=np.float64)
    magnitudes = 10.0 ** rng.uniform(-320, 307, 20_000) * rng.choice([-1.0, 1.0], 20_000)
    subnormals = rng.integers(1, 2**52, 5_000).astype(np.uint64).view(np.float64) * rng.choice([-1.0, 1.0], 5_000)
    bit_patterns = rng.integers(0, 2**64, 40_000, dtype=np.uint64).view(np.float64)
    values = np.concatenate([edges, realistic, integers, magnitudes, subnormals, bit_patterns])
    with np.errstate(over="ignore", invalid="ignore"):
        valid = np.isfinite(values) & (values >= ABSOLUTE_ZERO) & np.isfinite((values - 32.0) * 5.0)
    values = values[valid]
    assert values.size >= 100_000
    return values


def same_bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).view(np.uint64) == np.asarray(b, dtype=np.float64).view(np.uint64)


def test_layout_is_what_tf_serving_expects(model_base, tmp_path):
    assert (model_base / "1" / "saved_model.pb").is_file()
    assert (model_base / "1" / "variables").is_dir()
    assert [p.name for p in model_base.iterdir() if not p.name.startswith(".")] == ["1"]
    assert export(tmp_path / "m", version=7) == tmp_path / "m" / "7"
    with pytest.raises(FileExistsError):
        export(tmp_path / "m", version=7)
    export(tmp_path / "m", version=7, overwrite=True)
    with pytest.raises(ValueError):
        export(tmp_path / "m", version=0)


def test_signature(model_base):
    fn = tf.saved_model.load(str(model_base / "1")).signatures["serving_default"]
    (_, inputs) = fn.structured_input_signature
    assert list(inputs) == ["fahrenheit"]
    assert inputs["fahrenheit"].dtype == tf.float64
    assert inputs["fahrenheit"].shape.as_list() == [None]
    assert list(fn.structured_outputs) == ["celsius"]
    assert fn.structured_outputs["celsius"].dtype == tf.float64


def test_bit_identical_to_the_reference_expression(serving_fn):
    values = sample_values()
    got = serving_fn(values)
    expected = reference_celsius(values)
    mismatch = np.flatnonzero(~same_bits(got, expected))
    assert mismatch.size == 0, f"{mismatch.size} differ, first f={values[mismatch[0]]!r}"
    assert np.signbit(serving_fn(np.array([-0.0])))[0] == np.signbit(reference_celsius(-0.0))
    # The check can fail: the "simplified" formula differs for many of these inputs.
    assert not same_bits((values - 32.0) * (5.0 / 9.0), expected).all()


def test_empty_batch(serving_fn):
    assert serving_fn(np.array([], dtype=np.float64)).shape == (0,)


@pytest.mark.skipif(not SERVER_BINARY.exists(), reason=f"{SERVER_BINARY} not built")
def test_bit_identical_to_the_service(serving_fn):
    """Sends the same values to the real C++ service's /convert and compares bits."""
    values = sample_values()
    proc = subprocess.Popen([str(SERVER_BINARY), "--host", "127.0.0.1", "--port", "0",
                             "--max-batch", "20000", "--max-body-bytes", "8388608"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port_found = threading.Event()
        port: list[int] = []

        def read_output() -> None:  # also keeps draining the pipe afterwards
            for line in proc.stdout:
                if not port and (m := re.search(r'"msg":"listening".*"port":(\d+)', line)):
                    port.append(int(m.group(1)))
                    port_found.set()

        threading.Thread(target=read_output, daemon=True).start()
        assert port_found.wait(timeout=20), "the service did not start"
        port = port[0]
        native = []
        for chunk in np.array_split(values, int(np.ceil(values.size / 20_000))):
            body = json.dumps({"fahrenheit": [float(v) for v in chunk]}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/convert", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = json.loads(response.read())
            assert same_bits(answer["fahrenheit"], chunk).all(), "the service changed an input"
            native.extend(answer["celsius"])
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    mismatch = np.flatnonzero(~same_bits(serving_fn(values), np.array(native)))
    assert mismatch.size == 0, f"{mismatch.size} differ from the service, first f={values[mismatch[0]]!r}"


def saved_model_cli(*args: str) -> str:
    exe = Path(sys.executable).with_name("saved_model_cli")
    result = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_saved_model_cli_show(model_base):
    out = saved_model_cli("show", "--dir", str(model_base / "1"), "--all")
    assert "signature_def['serving_default']" in out
    section = out[out.index("signature_def['serving_default']"):]
    assert re.search(r"inputs\['fahrenheit'\] tensor_info:\s+dtype: DT_DOUBLE\s+shape: \(-1\)", section)
    assert re.search(r"outputs\['celsius'\] tensor_info:\s+dtype: DT_DOUBLE\s+shape: \(-1\)", section)
    assert "Method name is: tensorflow/serving/predict" in section


def test_saved_model_cli_run(model_base):
    out = saved_model_cli("run", "--dir", str(model_base / "1"), "--tag_set", "serve",
                          "--signature_def", "serving_default", "--input_exprs", "fahrenheit=[32.0, 212.0, -40.0]")
    numbers = re.findall(r"-?\d+\.?\d*", out[out.index("celsius"):])
    assert [float(n) for n in numbers[:3]] == [0.0, 100.0, -40.0], out


def test_command_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "model" / "src"))
    def run() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "celsius_model", "export", "--output", str(tmp_path / "b"),
                               "--version", "3"], capture_output=True, text=True, env=env, timeout=300)

    first = run()
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == str(tmp_path / "b" / "3")
    assert (tmp_path / "b" / "3" / "saved_model.pb").is_file()
    second = run()
    assert second.returncode == 2
    assert "exists" in second.stderr
