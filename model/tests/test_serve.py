"""The local model server over real sockets: plain HTTP and the official gRPC stubs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from celsius_model import reference_celsius
from celsius_model.tfjson import format_double

SRC = Path(__file__).resolve().parents[1] / "src"


class ModelServerProcess:
    def __init__(self, base: Path, *extra: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(SRC), TF_CPP_MIN_LOG_LEVEL="2")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celsius_model", "serve", "--port", "0", "--rest_api_port", "0",
             "--celsius_free_ports", "--model_name", "f2c", "--model_base_path", str(base), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        ready = threading.Event()
        self.grpc_port = self.rest_port = 0

        def read() -> None:
            for line in self.proc.stdout:
                self.lines.append(line)
                if m := re.search(r"Running gRPC ModelServer at [\d.]+:(\d+)", line):
                    self.grpc_port = int(m.group(1))
                if m := re.search(r"Exporting HTTP/REST API at:localhost:(\d+)", line):
                    self.rest_port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        assert ready.wait(timeout=120) and self.rest_port, "model server did not start:\n" + "".join(self.lines)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(model_base):
    process = ModelServerProcess(model_base)
    yield process
    assert process.stop() == 0


def rest(server, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def predict(server, payload, path="/v1/models/f2c:predict"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return rest(server, "POST", path, body)


def same_bits(a, b) -> bool:
    return bool((np.asarray(a, np.float64).view(np.uint64) == np.asarray(b, np.float64).view(np.uint64)).all())


VALUES = [32.0, 212.0, 98.6, -459.67, 0.1, -40.0, 1e300, 5e-324]


def test_rest_row_form_is_exact(server):
    status, body = predict(server, {"instances": VALUES})
    assert status == 200
    assert list(body) == ["predictions"]
    assert same_bits(body["predictions"], reference_celsius(np.array(VALUES)))


def test_rest_columnar_form_and_named_rows(server):
    status, body = predict(server, {"inputs": {"fahrenheit": VALUES}})
    assert status == 200 and same_bits(body["outputs"], reference_celsius(np.array(VALUES)))
    status, body = predict(server, {"inputs": VALUES, "signature_name": "serving_default"})
    assert status == 200 and same_bits(body["outputs"], reference_celsius(np.array(VALUES)))
    status, body = predict(server, {"instances": [{"fahrenheit": 212}, {"fahrenheit": 32}]})
    assert status == 200 and body["predictions"] == [100.0, 0.0]


def test_rest_versions_and_case_insensitive_paths(server):
    assert predict(server, {"instances": [212]}, "/v1/models/f2c/versions/1:predict")[0] == 200
    assert predict(server, {"instances": [212]}, "/V1/MODELS/f2c:PREDICT")[0] == 200
    status, body = predict(server, {"instances": [212]}, "/v1/models/f2c/versions/2:predict")
    assert status == 404 and body["error"] == "Servable not found for request: Specific(f2c, 2)"


def test_rest_nan_and_infinity_tokens(server):
    status, body = predict(server, b'{"instances": [NaN, Infinity, -Infinity]}')
    assert status == 200
    assert np.isnan(body["predictions"][0]) and body["predictions"][1] == float("inf")
    assert body["predictions"][2] == float("-inf")


def test_rest_status_and_metadata(server):
    assert rest(server, "GET", "/v1/models/f2c") == (200, {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
    status, body = rest(server, "GET", "/v1/models/f2c/metadata")
    assert status == 200 and body["model_spec"]["version"] == "1"
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["fahrenheit"]["dtype"] == "DT_DOUBLE"
    assert signature["outputs"]["celsius"]["dtype"] == "DT_DOUBLE"


@pytest.mark.parametrize("payload, status, fragment", [
    ({"instances": [1]}, 404, "Servable not found for request: Latest(nope)"),
    (b"{bad", 400, "JSON Parse error"),
    ({"instances": [1], "inputs": [1]}, 400, "Not both of 'instances' and 'inputs'"),
    ({"signature_name": "serving_default"}, 400, "Missing 'inputs' or 'instances' key"),
    ({"instances": ["hot"]}, 400, "not of expected type: double"),
    ({"instances": [True]}, 400, "not of expected type: double"),
    ({"instances": [[1, 2]]}, 400, "not of expected type: double"),
    ({"instances": [1], "signature_name": "nope"}, 400, 'Serving signature key "nope" not found.'),
    ({"inputs": {"kelvin": [1]}}, 400, "input keys do not match"),
])
def test_rest_errors(server, payload, status, fragment):
    path = "/v1/models/nope:predict" if status == 404 else "/v1/models/f2c:predict"
    got_status, body = predict(server, payload, path)
    assert got_status == status
    assert list(body) == ["error"] and fragment in body["error"]


def test_rest_unknown_paths(server):
    assert rest(server, "GET", "/v1/nothing")[0] == 404
    assert rest(server, "POST", "/v1/models/f2c:classify", b"{}")[0] == 501


def test_number_formatting_matches_tf_serving():
    assert format_double(100.0) == "100.0"
    assert format_double(-40.0) == "-40.0"
    assert format_double(0.1) == "0.1"
    assert format_double(37.77777777777778) == "37.777777777777779"
    assert format_double(float("nan")) == "NaN"
    assert format_double(float("-inf")) == "-Infinity"
    for v in np.random.default_rng(1).uniform(-500, 500, 1000):
        assert float(format_double(float(v))) == v


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)
    channel.close()


def predict_request(values, name="f2c", signature="", dtype=tf.float64, key="fahrenheit", version=None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    request.inputs[key].CopyFrom(tf.make_tensor_proto(values, dtype=dtype))
    return request


def test_grpc_predict_is_exact(stub):
    response = stub[0].Predict(predict_request(VALUES), timeout=30)
    out = response.outputs["celsius"]
    assert out.dtype == types_pb2.DT_DOUBLE
    assert [d.size for d in out.tensor_shape.dim] == [len(VALUES)]
    assert not out.tensor_content, "responses use double_val"
    assert same_bits(list(out.double_val), reference_celsius(np.array(VALUES)))
    assert response.model_spec.name == "f2c" and response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"


@pytest.mark.parametrize("request_kwargs, code", [
    ({"name": "nope"}, grpc.StatusCode.NOT_FOUND),
    ({"version": 2}, grpc.StatusCode.NOT_FOUND),
    ({"signature": "nope"}, grpc.StatusCode.FAILED_PRECONDITION),
    ({"dtype": tf.float32}, grpc.StatusCode.INVALID_ARGUMENT),
    ({"key": "kelvin"}, grpc.StatusCode.INVALID_ARGUMENT),
])
def test_grpc_errors(stub, request_kwargs, code):
    with pytest.raises(grpc.RpcError) as error:
        stub[0].Predict(predict_request([1.0], **request_kwargs), timeout=30)
    assert error.value.code() == code
    assert error.value.details()


def test_grpc_model_status(stub):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "f2c"
    response = stub[1].GetModelStatus(request, timeout=30)
    assert [(s.version, s.state) for s in response.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as error:
        stub[1].GetModelStatus(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_slow_model_server_hits_the_client_deadline(model_base):
    slow = ModelServerProcess(model_base, "--celsius_reply_delay_ms", "1000")
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{slow.grpc_port}")
        with pytest.raises(grpc.RpcError) as error:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(predict_request([1.0]), timeout=0.2)
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        channel.close()
    finally:
        assert slow.stop() == 0


def test_malformed_replies_option_breaks_both_protocols(model_base):
    broken = ModelServerProcess(model_base, "--celsius_malformed_replies")
    try:
        status, body = predict(broken, {"instances": [32.0]})
        assert status == 200 and body == {"predictions": {"unexpected": [0.0]}}
        channel = grpc.insecure_channel(f"127.0.0.1:{broken.grpc_port}")
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(predict_request([32.0]),
                                                                                      timeout=30)
        assert response.outputs["celsius"].dtype == types_pb2.DT_FLOAT
        channel.close()
    finally:
        assert broken.stop() == 0


def test_flags_keep_tensorflow_model_server_names():
    from celsius_model.serve import build_parser

    help_text = build_parser().format_help()
    for flag in ("--port", "--rest_api_port", "--model_name", "--model_base_path", "--rest_api_num_threads"):
        assert flag in help_text
