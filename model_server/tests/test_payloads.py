"""Payloads above 4 MiB (gRPC's default receive limit, which TF Serving lifts) on gRPC and
REST: straight to the model server, batched and unbatched, and through the C++ service
(celsius-server with --max-batch raised) over both of its model-server protocols."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from model_server_harness import REPO
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from celsius_model import reference_celsius

COUNT = 600_000  # 4.8 MB of doubles on gRPC, about 11 MB of JSON on REST
SERVICE = Path(os.environ.get("CELSIUS_SERVER_BINARY", REPO / "build" / "release" / "celsius-server"))


def values() -> np.ndarray:
    return np.random.default_rng(8).uniform(-459.67, 1000, COUNT)


@pytest.mark.parametrize("batching", [False, True], ids=["unbatched", "batched"])
def test_large_payloads_on_grpc_and_rest(model_base, start, tmp_path, batching):
    extra = []
    if batching:
        config = tmp_path / "batching.config"
        config.write_text(f"max_batch_size {{ value: {COUNT} }}\n")
        extra = ["--enable_batching", f"--batching_parameters_file={config}"]
    server = start(model_base, *extra)
    x = values()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "f2c"
    request.inputs["fahrenheit"].CopyFrom(tf.make_tensor_proto(x, dtype=tf.float64))
    assert request.ByteSize() > 4 * 2**20
    channel = server.channel(**{"grpc.max_receive_message_length": 64 * 2**20})
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=120)
    assert response.ByteSize() > 4 * 2**20
    got = np.array(response.outputs["celsius"].double_val)
    assert got.view(np.uint64).tolist() == reference_celsius(x).view(np.uint64).tolist()
    channel.close()

    body = json.dumps({"instances": x.tolist()}).encode()
    assert len(body) > 4 * 2**20
    status, data, _ = server.rest("POST", "/v1/models/f2c:predict", body, timeout=120)
    assert status == 200
    got = np.array(json.loads(data)["predictions"], dtype=np.float64)
    assert got.view(np.uint64).tolist() == reference_celsius(x).view(np.uint64).tolist()


class Service:
    def __init__(self, model_server: str, extra: list[str]) -> None:
        self.proc = subprocess.Popen([str(SERVICE), "--host", "127.0.0.1", "--port", "0",
                                      "--model-server", model_server, *extra], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.port = 0
        ready = threading.Event()

        def read() -> None:
            for line in self.proc.stdout:
                self.lines.append(line)
                if m := re.search(r'"msg":"listening".*"port":(\d+)', line):
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        assert ready.wait(60) and self.port, "".join(self.lines)

    def post(self, path: str, body: bytes) -> tuple[int, dict]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout=60)


@pytest.mark.skipif(not SERVICE.exists(), reason="celsius-server is not built")
@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_large_payloads_through_the_service(model_base, start, protocol):
    server = start(model_base)
    target = (f"grpc://127.0.0.1:{server.grpc_port}" if protocol == "grpc" else
              f"http://127.0.0.1:{server.rest_port}")
    service = Service(target, ["--max-batch", str(COUNT), "--max-body-bytes", str(64 * 2**20),
                               "--model-timeout-ms", "60000"])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{service.port}/readyz", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        x = values()
        body = json.dumps({"fahrenheit": x.tolist()}).encode()
        assert len(body) > 4 * 2**20
        status, answer = service.post("/convert/model", body)
        assert status == 200, answer
        got = np.array(answer["celsius"], dtype=np.float64)
        native_status, native = service.post("/convert", body)
        assert native_status == 200
        assert got.view(np.uint64).tolist() == np.array(native["celsius"], dtype=np.float64).view(np.uint64).tolist()
        assert answer["model"] == {"name": "f2c", "version": "1"}
    finally:
        assert service.stop() == 0
