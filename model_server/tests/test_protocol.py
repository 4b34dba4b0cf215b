"""TF Serving's protocols, spoken by celsius-model-server: REST over plain HTTP, gRPC with the
official tensorflow-serving-api client (Predict, GetModelStatus, GetModelMetadata), the
messages and status codes of TF Serving's sources, the test aids, flags and shutdown."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from model_server_harness import ModelServer, metric_value
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from celsius_model import reference_celsius

VALUES = [32.0, 212.0, 98.6, -459.67, 0.1, -40.0, 1e300, 5e-324, -0.0, 2.2250738585072014e-308]


@pytest.fixture(scope="module")
def server(model_base):
    process = ModelServer(model_base, "--enable_grpc_healthcheck_service")
    yield process
    assert process.stop() == 0, process.log()


def same_bits(a, b) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and bool((a.view(np.uint64) == b.view(np.uint64)).all())


# ---------------------------------------------------------------- REST

def test_rest_row_form_is_exact_and_pretty_printed(server):
    status, body, headers = server.rest("POST", "/v1/models/f2c:predict", json.dumps({"instances": VALUES}).encode())
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert body.startswith(b'{\n    "predictions": [0.0, 100.0, 37.0, -273.15, -17.722222222222221,')
    assert same_bits(json.loads(body)["predictions"], reference_celsius(np.array(VALUES)))


def test_rest_columnar_form_named_rows_and_signature_name(server):
    status, body = server.predict({"inputs": {"fahrenheit": VALUES}})
    assert status == 200 and list(body) == ["outputs"] and same_bits(body["outputs"], reference_celsius(np.array(VALUES)))
    status, body = server.predict({"inputs": VALUES, "signature_name": "serving_default"})
    assert status == 200 and same_bits(body["outputs"], reference_celsius(np.array(VALUES)))
    status, body = server.predict({"instances": [{"fahrenheit": 212}, {"fahrenheit": 32}]})
    assert (status, body) == (200, {"predictions": [100.0, 0.0]})
    status, body = server.predict({"inputs": 212})  # a scalar tensor in, a scalar out
    assert (status, body) == (200, {"outputs": 100.0})
    # TensorFlow does not check a fed shape against the placeholder's [None]: rank 2 runs.
    status, body = server.predict({"instances": [[32, 212]]})
    assert (status, body) == (200, {"predictions": [[0.0, 100.0]]})


def test_rest_versions_labels_and_path_spelling(server):
    assert server.predict({"instances": [212]}, "/v1/models/f2c/versions/1:predict")[0] == 200
    assert server.predict({"instances": [212]}, "/V1/MODELS/f2c/VERSIONS/1:predict")[0] == 200
    assert server.predict({"instances": [212]}, "/v1/models/f2c:predict?ignored=query")[0] == 200
    assert server.predict({"instances": [212]}, "/v1/models/f2c/versions/2:predict") == (
        404, {"error": "Servable not found for request: Specific(f2c, 2)"})
    assert server.predict({"instances": [212]}, "/v1/models/f2c/labels/stable:predict") == (
        400, {"error": "Unrecognized servable version label: stable"})
    # TF Serving's pattern is case-insensitive, but it dispatches on the method as written.
    assert server.predict({"instances": [212]}, "/v1/models/f2c:PREDICT") == (
        400, {"error": "Malformed request: POST /v1/models/f2c:PREDICT"})


def test_rest_nan_and_infinity_tokens(server):
    status, body, _ = server.rest("POST", "/v1/models/f2c:predict", b'{"instances": [NaN, Infinity, -Infinity]}')
    assert status == 200
    assert b"NaN, Infinity, -Infinity" in body  # bare tokens, as TF Serving writes them
    predictions = json.loads(body)["predictions"]
    assert np.isnan(predictions[0]) and predictions[1:] == [float("inf"), float("-inf")]


def test_rest_status_and_metadata(server, model_base):
    assert server.rest_json("GET", "/v1/models/f2c") == (200, {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
    assert server.rest_json("GET", "/v1/models/f2c/versions/1")[0] == 200
    assert server.rest_json("GET", "/v1/models/f2c/versions/3") == (404, {"error": "Could not find version 3 of model f2c"})
    assert server.rest_json("GET", "/v1/models/nope") == (404, {"error": "Could not find any versions of model nope"})
    assert server.rest_json("GET", "/v1/models") == (400, {"error": "Missing model name in request."})
    status, body = server.rest_json("GET", "/v1/models/f2c/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "f2c", "signature_name": "", "version": "1"}
    # The SignatureDefs are the SavedModel's own, as protobuf's JSON mapping prints them.
    saved = saved_model_pb2.SavedModel.FromString((model_base / "1" / "saved_model.pb").read_bytes())
    expected = {key: json_format.MessageToDict(sig, preserving_proto_field_name=True,
                                               always_print_fields_with_no_presence=True)
                for key, sig in saved.meta_graphs[0].signature_def.items()}
    assert body["metadata"]["signature_def"]["signature_def"] == expected
    signature = expected["serving_default"]
    assert signature["inputs"]["fahrenheit"]["dtype"] == "DT_DOUBLE"
    assert signature["method_name"] == "tensorflow/serving/predict"


@pytest.mark.parametrize("payload, status, message", [
    ({"instances": [1]}, 404, "Servable not found for request: Latest(nope)"),
    (b"", 400, "JSON Parse error: The document is empty"),
    (b"{bad", 400, "JSON Parse error: Missing a name for object member. at offset: 1"),
    (b"[1]", 400, "JSON Value: [\n    1\n] Is not object"),
    ({"instances": [1], "inputs": [1]}, 400, "one of 'inputs' or 'instances' keys to exist"),
    ({"signature_name": "serving_default"}, 400, "Missing 'inputs' or 'instances' key"),
    ({"instances": ["hot"]}, 400, 'JSON Value: "hot" Type: String is not of expected type: double'),
    ({"instances": [True]}, 400, "JSON Value: true Type: True is not of expected type: double"),
    ({"instances": [[1, 2], [3]]}, 400, "Expecting tensor size: 2 but got: 1"),
    ({"instances": [1], "signature_name": "nope"}, 400, 'Serving signature name: "nope" not found in signature def'),
    ({"inputs": {"kelvin": [1]}}, 400, "Missing named input: fahrenheit in 'inputs' object."),
    ({"instances": [9007199254740993]}, 400, "to double without loss of precision."),
])
def test_rest_errors(server, payload, status, message):
    path = "/v1/models/nope:predict" if status == 404 else "/v1/models/f2c:predict"
    got_status, body = server.predict(payload, path)
    assert got_status == status
    assert list(body) == ["error"] and message in body["error"], body


def test_rest_unknown_paths_and_methods(server):
    assert server.rest_json("GET", "/v1/nothing") == (400, {"error": "Malformed request: GET /v1/nothing"})
    assert server.rest_json("PUT", "/v1/models/f2c", b"{}") == (400, {"error": "Malformed request: PUT /v1/models/f2c"})
    assert server.rest_json("GET", "/healthz") == (404, {"error": "Malformed request: GET /healthz"})
    status, body = server.rest_json("POST", "/v1/models/f2c:classify", b"{}")
    assert status == 501 and ":classify" in body["error"]
    # Malformed HTTP gets a JSON answer too.
    import socket

    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as s:
        s.sendall(b"GARBAGE\r\n\r\n")
        answer = s.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 400 ") and '"error": "malformed HTTP request' in answer


def test_rest_keep_alive_and_pipelining(server):
    import socket

    body = b'{"instances": [212]}'
    one = (b"POST /v1/models/f2c:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as s:
        s.sendall(one * 3)
        data = b""
        while data.count(b"HTTP/1.1 200 OK") < 3:
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
    assert data.count(b"100.0") == 3


# ---------------------------------------------------------------- gRPC

@pytest.fixture(scope="module")
def stubs(server):
    channel = server.channel()
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)
    channel.close()


def predict_request(values, name="f2c", signature="", dtype=tf.float64, key="fahrenheit", version=None, label=None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs[key].CopyFrom(tf.make_tensor_proto(values, dtype=dtype))
    return request


def test_grpc_predict_is_exact(stubs):
    response = stubs[0].Predict(predict_request(VALUES), timeout=30)
    out = response.outputs["celsius"]
    assert out.dtype == types_pb2.DT_DOUBLE
    assert [d.size for d in out.tensor_shape.dim] == [len(VALUES)]
    assert not out.tensor_content, "answers use double_val (Tensor::AsProtoField)"
    assert same_bits(list(out.double_val), reference_celsius(np.array(VALUES)))
    assert response.model_spec.name == "f2c" and response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"


def test_grpc_predict_tensor_content_and_broadcast(stubs):
    request = predict_request(VALUES)  # make_tensor_proto packs tensor_content
    assert request.inputs["fahrenheit"].tensor_content
    assert same_bits(stubs[0].Predict(request, timeout=30).outputs["celsius"].double_val,
                     reference_celsius(np.array(VALUES)))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "f2c"
    tensor = request.inputs["fahrenheit"]
    tensor.dtype = types_pb2.DT_DOUBLE
    tensor.tensor_shape.dim.add().size = 3
    tensor.double_val.append(212.0)  # one value fills the shape (Tensor::FromProto)
    assert list(stubs[0].Predict(request, timeout=30).outputs["celsius"].double_val) == [100.0] * 3


@pytest.mark.parametrize("kwargs, code, message", [
    ({"name": "nope"}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    ({"version": 2}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(f2c, 2)"),
    ({"label": "canary"}, grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: canary"),
    ({"name": ""}, grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
    ({"signature": "nope"}, grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.'),
    ({"dtype": tf.float32}, grpc.StatusCode.INVALID_ARGUMENT, "Expects arg[0] to be double but float is provided"),
    ({"key": "kelvin"}, grpc.StatusCode.INVALID_ARGUMENT,
     "input tensor alias not found in signature: kelvin. Inputs expected to be in the set {fahrenheit}."),
])
def test_grpc_errors(stubs, kwargs, code, message):
    with pytest.raises(grpc.RpcError) as error:
        stubs[0].Predict(predict_request([1.0], **kwargs), timeout=30)
    assert error.value.code() == code
    assert message in error.value.details()


def test_grpc_input_and_output_checks(stubs):
    request = predict_request([1.0])
    request.inputs["extra"].CopyFrom(tf.make_tensor_proto([1.0], dtype=tf.float64))
    with pytest.raises(grpc.RpcError) as error:
        stubs[0].Predict(request, timeout=30)
    assert error.value.details() == ("input size does not match signature: 2!=1 len({extra,fahrenheit}) != "
                                     "len({fahrenheit}). Sent extra: {extra}. Missing but required: {}.")
    request = predict_request([1.0])
    request.output_filter.append("kelvin")
    with pytest.raises(grpc.RpcError) as error:
        stubs[0].Predict(request, timeout=30)
    assert error.value.details() == "output tensor alias not found in signature: kelvin Outputs expected to be in the set {celsius}."
    request = predict_request([1.0])
    request.output_filter.append("celsius")
    assert list(stubs[0].Predict(request, timeout=30).outputs) == ["celsius"]
    request = predict_request([1.0])
    request.inputs["fahrenheit"].tensor_shape.dim[0].size = -1
    with pytest.raises(grpc.RpcError) as error:
        stubs[0].Predict(request, timeout=30)
    assert (error.value.code(), error.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                           "tensor parsing error: fahrenheit")


def test_grpc_model_status(stubs):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "f2c"
    response = stubs[1].GetModelStatus(request, timeout=30)
    assert [(s.version, s.state, s.status.error_code) for s in response.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)]
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as error:
        stubs[1].GetModelStatus(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert error.value.details() == "Could not find any versions of model nope"
    with pytest.raises(grpc.RpcError) as error:
        stubs[1].GetModelStatus(get_model_status_pb2.GetModelStatusRequest(), timeout=30)
    assert (error.value.code(), error.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


def test_grpc_model_metadata(stubs, model_base):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "f2c"
    request.metadata_field.append("signature_def")
    response = stubs[0].GetModelMetadata(request, timeout=30)
    assert response.model_spec.name == "f2c" and response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    saved = saved_model_pb2.SavedModel.FromString((model_base / "1" / "saved_model.pb").read_bytes())
    assert dict(signatures.signature_def) == dict(saved.meta_graphs[0].signature_def)
    request.metadata_field[0] = "graph_def"
    with pytest.raises(grpc.RpcError) as error:
        stubs[0].GetModelMetadata(request, timeout=30)
    assert (error.value.code(), error.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                           "Metadata field graph_def is not supported")
    del request.metadata_field[:]
    with pytest.raises(grpc.RpcError) as error:
        stubs[0].GetModelMetadata(request, timeout=30)
    assert error.value.details() == "GetModelMetadataRequest must specify at least one metadata_field"


def health(channel: grpc.Channel, service: str) -> bytes:
    """grpc.health.v1.Health/Check by hand (HealthCheckRequest{service=1}); the raw answer."""
    check = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=lambda b: b,
                                response_deserializer=lambda b: b)
    name = service.encode()
    return check(b"\x0a" + bytes([len(name)]) + name if name else b"", timeout=10)


def test_grpc_health_service(server):
    channel = server.channel()
    for service in ("", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"):
        assert health(channel, service) == b"\x08\x01", service  # status: SERVING
    with pytest.raises(grpc.RpcError) as error:
        health(channel, "no.such.Service")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    channel.close()


def test_unimplemented_rpcs(stubs, server):
    channel = server.channel()
    classify = channel.unary_unary("/tensorflow.serving.PredictionService/Classify", request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as error:
        classify(b"", timeout=10)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    channel.close()


def test_metrics_count_requests_by_status(model_base, start, tmp_path):
    config = tmp_path / "monitoring.config"
    config.write_text('prometheus_config { enable: true, path: "/metrics" }\n')
    server = start(model_base, f"--monitoring_config_file={config}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    stub.Predict(predict_request([1.0]), timeout=30)
    server.predict({"instances": [1.0]})
    with pytest.raises(grpc.RpcError):
        stub.Predict(predict_request([1.0], version=9), timeout=30)
    page = server.metrics("/metrics")
    assert page.startswith("# TYPE ")
    assert metric_value(page, ':tensorflow:serving:request_count{model_name="f2c",status="OK"}') == 2
    assert metric_value(page, ':tensorflow:serving:request_count{model_name="f2c",status="NOT_FOUND"}') == 1
    assert metric_value(page, ':tensorflow:serving:request_latency_count{model_name="f2c",API="Predict",'
                              'entrypoint="GRPC"}') == 2
    assert metric_value(page, ':tensorflow:serving:runtime_latency_count{model_name="f2c",API="Predict",'
                              'runtime="TF1"}') == 2
    assert server.rest("GET", "/monitoring/prometheus/metrics")[0] == 404  # only the configured path


# ---------------------------------------------------------------- test aids, flags, process

def test_slow_model_server_hits_the_client_deadline(model_base, start):
    slow = start(model_base, "--celsius_reply_delay_ms", "1000")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(slow.channel())
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(predict_request([1.0]), timeout=0.2)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # Status calls are not delayed.
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "f2c"
    started = time.monotonic()
    model_service_pb2_grpc.ModelServiceStub(slow.channel()).GetModelStatus(request, timeout=30)
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("path,payload,status", [
    ("/v1/models/nope:predict", {"instances": [1]}, 404),  # the REST front end's servable lookup
    ("/v1/models/f2c:predict", b"{", 400),  # the REST front end's JSON parsing
    ("/v1/models/f2c:predict", {"instances": [1]}, 200),
])
def test_reply_delay_holds_every_rest_predict_answer_errors_too(model_base, start, path, payload, status):
    """--celsius_reply_delay_ms: "every Predict answers that late", also those that fail before
    the predictor runs (a test of the celsius service merges failing calls behind a slow one).
    Only a lower bound on the time: a busy machine makes answers later, never earlier."""
    slow = start(model_base, "--celsius_reply_delay_ms", "600")
    started = time.monotonic()
    assert slow.rest_json("POST", path, payload)[0] == status
    assert time.monotonic() - started >= 0.6


def test_malformed_replies_option_breaks_both_protocols(model_base, start):
    broken = start(model_base, "--celsius_malformed_replies")
    status, body = broken.predict({"instances": [32.0]})
    assert (status, body) == (200, {"predictions": {"unexpected": [0.0]}})
    stub = prediction_service_pb2_grpc.PredictionServiceStub(broken.channel())
    assert stub.Predict(predict_request([32.0]), timeout=30).outputs["celsius"].dtype == types_pb2.DT_FLOAT


def test_cors_headers(model_base, start):
    server = start(model_base, "--rest_api_enable_cors_support")
    _, _, headers = server.rest("GET", "/v1/models/f2c")
    assert headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("extra", [[], ["--enable_batching"]], ids=["unbatched", "batched"])
def test_sigterm_finishes_requests_in_flight_and_exits_zero(model_base, extra):
    # The delay answers each call from another thread 2 s later (gRPC: after its handler
    # has returned), so SIGTERM at 1 s finds both calls in flight (1 s: room for a busy machine).
    server = ModelServer(model_base, "--celsius_reply_delay_ms", "2000", *extra)
    channel = server.channel()
    grpc.channel_ready_future(channel).result(timeout=60)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    results = {}

    def rest():
        results["rest"] = server.predict({"instances": [212]})

    def grpc_call():
        results["grpc"] = list(stub.Predict(predict_request([212.0]), timeout=30).outputs["celsius"].double_val)

    threads = [threading.Thread(target=rest), threading.Thread(target=grpc_call)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    assert not results, "both calls are still in flight when SIGTERM comes"
    server.proc.send_signal(15)
    for thread in threads:
        thread.join(timeout=30)
    channel.close()
    assert results["rest"] == (200, {"predictions": [100.0]})
    assert results["grpc"] == [100.0]
    assert server.proc.wait(timeout=30) == 0
    assert "Server stopped" in server.log()


def test_flags_keep_tensorflow_model_server_names():
    import subprocess

    from model_server_harness import BINARY

    help_text = subprocess.run([str(BINARY), "--help"], capture_output=True, text=True, timeout=30).stdout
    for flag in ("--port", "--rest_api_port", "--model_name", "--model_base_path", "--rest_api_num_threads",
                 "--enable_batching", "--batching_parameters_file", "--file_system_poll_wait_seconds",
                 "--monitoring_config_file", "--grpc_channel_arguments", "--rest_api_timeout_in_ms"):
        assert re.search(rf"^\s+{flag}\b", help_text, re.M), flag
    refused = subprocess.run([str(BINARY), "--model_base_path=/x", "--model_config_file=/c"], capture_output=True,
                             text=True, timeout=30)
    assert refused.returncode == 2 and "--model_config_file is not supported" in refused.stderr
    unknown = subprocess.run([str(BINARY), "--model_base_path=/x", "--nope"], capture_output=True, text=True,
                             timeout=30)
    assert unknown.returncode != 0 and "--nope" in unknown.stderr
    version = subprocess.run([str(BINARY), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0
    assert re.search(r"^TensorFlow ModelServer: celsius-model-server \S+\nTensorFlow Library: 2\.", version.stdout)


def test_flags_without_effect_are_logged(model_base, start):
    server = start(model_base, "--enable_model_warmup=false", "--num_load_threads=2")
    assert "--num_load_threads=2: accepted for compatibility with tensorflow_model_server" in server.log()


def test_startup_errors(model_base, tmp_path):
    import subprocess

    from model_server_harness import BINARY

    bad = tmp_path / "batching.config"
    bad.write_text("max_batch_size { value: many }\n")
    for args, message in [
        ([f"--batching_parameters_file={bad}"], "batching_parameters_file is set without setting"),
        (["--enable_batching", f"--batching_parameters_file={bad}"], f"Invalid protobuf file: '{bad}'"),
        (["--grpc_channel_arguments=novalue"], "is not key=value"),
    ]:
        done = subprocess.run([str(BINARY), "--port=0", "--model_base_path", str(model_base), *args],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 255, done
        assert "Failed to start server. Error: " in done.stdout and message in done.stdout, done.stdout


def test_a_broken_first_version_fails_the_start(tmp_path):
    import subprocess

    from model_server_harness import BINARY

    (tmp_path / "f2c" / "1").mkdir(parents=True)
    (tmp_path / "f2c" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    done = subprocess.run([str(BINARY), "--port=0", "--model_name=f2c", f"--model_base_path={tmp_path / 'f2c'}",
                           "--max_num_load_retries=0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 255
    assert "Failed to start server. Error: " in done.stdout


def test_grpc_channel_arguments_reach_the_server(model_base, start):
    # A server-side limit the official client then hits (as in TF Serving's own test).
    server = start(model_base, "--grpc_channel_arguments=grpc.max_connection_age_ms=200000,grpc.some_string=x")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    assert stub.Predict(predict_request([212.0]), timeout=30).outputs["celsius"].double_val == [100.0]


def test_unix_socket(model_base, start, tmp_path):
    path = tmp_path / "grpc.sock"
    server = start(model_base, f"--grpc_socket_path={path}")
    server.wait_for_log(r"Running gRPC ModelServer at UNIX socket")
    channel = grpc.insecure_channel(f"unix:{path}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    assert stub.Predict(predict_request([212.0]), timeout=30).outputs["celsius"].double_val == [100.0]
    channel.close()



def tf_compute_switches(server: ModelServer) -> int:
    """Context switches (voluntary, /proc) of TensorFlow's pool threads ("tf_Compute") so far."""
    total = 0
    for task in Path(f"/proc/{server.proc.pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == "tf_Compute":
                total += int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", (task / "status").read_text(),
                                       re.M).group(1))
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended meanwhile
    return total


def test_negative_inter_op_parallelism_runs_the_session_in_the_callers_thread(model_base, start):
    # TF Serving's flags, as server.cc reads them; a negative inter_op_parallelism_threads is
    # ConfigProto's "run in the caller's thread". The answers stay exact (REST, and gRPC with
    # a deadline, i.e. RunOptions.timeout_in_ms), and TensorFlow's pool threads, woken for
    # every run by default, are not woken at all.
    requests = 100
    counts = {}
    for name, flags in [("default", ()), ("caller", ("--tensorflow_intra_op_parallelism=1",
                                                     "--tensorflow_inter_op_parallelism=-1"))]:
        server = start(model_base, *flags)
        expected = "intra_op_parallelism_threads 1, inter_op_parallelism_threads -1" if flags else \
            "intra_op_parallelism_threads 0, inter_op_parallelism_threads 0"
        assert expected in server.log()
        stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
        before = tf_compute_switches(server)
        for i in range(requests // 2):
            value = VALUES[i % len(VALUES)]
            status, body = server.predict({"instances": [value]})
            assert status == 200 and same_bits(body["predictions"], reference_celsius(np.array([value])))
            answer = stub.Predict(predict_request([value]), timeout=30).outputs["celsius"].double_val
            assert same_bits(list(answer), reference_celsius(np.array([value])))
        counts[name] = tf_compute_switches(server) - before
    assert counts["caller"] < 5, counts
    assert counts["default"] >= 10, counts
