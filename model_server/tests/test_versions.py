"""Versions like TF Serving's defaults: the newest numeric version is served, the base path is
polled, a new version is loaded and switched to without failing a request in flight (on both
transports), a version that fails to load is reported while the old one keeps serving, and the
ports open only once a first version is available."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections import Counter

import grpc
import pytest
import tensorflow as tf
from model_server_harness import ModelServer, export, free_ports
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


def predict_request(values, version=None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "f2c"
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["fahrenheit"].CopyFrom(tf.make_tensor_proto(values, dtype=tf.float64))
    return request


def statuses(server) -> dict[str, tuple[str, str]]:
    status, body = server.rest_json("GET", "/v1/models/f2c")
    assert status == 200, body
    return {v["version"]: (v["state"], v["status"]["error_code"]) for v in body["model_version_status"]}


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


class Load:
    """Threads sending Predict without pause over gRPC and REST; every answer is checked."""

    def __init__(self, server: ModelServer, threads_per_transport: int = 3) -> None:
        self.server = server
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.versions: Counter = Counter()
        self.first_v2: float | None = None
        self.count = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.grpc_loop) for _ in range(threads_per_transport)]
        self.threads += [threading.Thread(target=self.rest_loop) for _ in range(threads_per_transport)]
        for t in self.threads:
            t.start()

    def record(self, version: int | None, error: str | None) -> None:
        with self.lock:
            self.count += 1
            if error:
                self.failures.append(error)
            if version is not None:
                self.versions[version] += 1
                if version == 2 and self.first_v2 is None:
                    self.first_v2 = time.monotonic()

    def grpc_loop(self) -> None:
        channel = self.server.channel()
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        while not self.stop.is_set():
            try:
                response = stub.Predict(predict_request([212.0, 32.0]), timeout=30)
                ok = list(response.outputs["celsius"].double_val) == [100.0, 0.0]
                self.record(response.model_spec.version.value, None if ok else f"gRPC answer {response}")
            except grpc.RpcError as error:
                self.record(None, f"gRPC {error.code()}: {error.details()}")
        channel.close()

    def rest_loop(self) -> None:
        while not self.stop.is_set():
            try:
                status, body = self.server.predict({"instances": [212.0, 32.0]})
                ok = status == 200 and body == {"predictions": [100.0, 0.0]}
                self.record(None, None if ok else f"REST {status} {body}")
            except OSError as error:
                self.record(None, f"REST {error}")

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


@pytest.mark.parametrize("batching", [False, True], ids=["unbatched", "batched"])
def test_hot_swap_under_load_fails_no_request(tmp_path, start, batching):
    base = tmp_path / "f2c"
    export(base, version=1)
    extra = ["--file_system_poll_wait_seconds=1"]
    if batching:
        # Requests wait up to 20 ms in the queue, holding version 1 while version 2 arrives.
        config = tmp_path / "batching.config"
        config.write_text("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 20000 }\n"
                          "max_enqueued_batches { value: 1000 }\nnum_batch_threads { value: 2 }\n")
        extra += ["--enable_batching", f"--batching_parameters_file={config}"]
    server = start(base, *extra)
    load = Load(server)
    try:
        wait_until(lambda: load.count > 50, 60, "load running on version 1")
        export(base, version=2)  # atomic: written beside, then renamed into place
        exported = time.monotonic()
        wait_until(lambda: load.first_v2 is not None, 60, "gRPC answers from version 2")
        switch = load.first_v2 - exported
        # Old version unloaded once its last request finished.
        wait_until(lambda: statuses(server) == {"2": ("AVAILABLE", "OK"), "1": ("END", "OK")}, 60,
                   "version 1 unloaded")
        after = load.count
        wait_until(lambda: load.count > after + 50, 60, "load running on version 2")
    finally:
        load.finish()
    assert load.failures == [], load.failures[:5]
    assert load.versions[1] > 0 and load.versions[2] > 0
    # Poll period 1 s: the switch takes a poll or two plus the load (which is slower on a
    # busy machine; the bound leaves room for that).
    print(f"switched to version 2 {switch:.2f} s after the export; {load.count} requests, 0 failed")
    assert switch < 15, switch
    log = server.log()
    assert "Successfully loaded servable version {name: f2c version: 2}" in log
    assert "Done unloading servable version {name: f2c version: 1}" in log
    # The old version is gone for specific requests too.
    assert server.predict({"instances": [1]}, "/v1/models/f2c/versions/1:predict") == (
        404, {"error": "Servable not found for request: Specific(f2c, 1)"})


def test_a_broken_version_is_reported_and_the_old_one_keeps_serving(tmp_path, start):
    base = tmp_path / "f2c"
    export(base, version=1)
    server = start(base, "--file_system_poll_wait_seconds=1", "--max_num_load_retries=1",
                   "--load_retry_interval_micros=300000")
    broken = base / ".2.tmp"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"\x08garbage, not a SavedModel")
    broken.rename(base / "2")
    # Retried once, then reported; the message is TensorFlow's.
    server.wait_for_log(r"Retrying of Loading servable: \{name: f2c version: 2\} retry: 1", 60)
    state = wait_until(lambda: (s := statuses(server)).get("2", ("",))[0] == "END" and s, 60, "version 2 failed")
    assert state["1"] == ("AVAILABLE", "OK")
    assert state["2"][1] != "OK"
    _, body = server.rest_json("GET", "/v1/models/f2c/versions/2")
    assert body["model_version_status"][0]["status"]["error_message"], body
    # Version 1 serves on both transports, for "latest" requests.
    assert server.predict({"instances": [212]}) == (200, {"predictions": [100.0]})
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    assert stub.Predict(predict_request([212.0]), timeout=30).model_spec.version.value == 1
    # A good version 3 replaces both; the broken one stays reported.
    export(base, version=3)
    wait_until(lambda: statuses(server).get("3") == ("AVAILABLE", "OK"), 60, "version 3")
    wait_until(lambda: statuses(server).get("1") == ("END", "OK"), 60, "version 1 unloaded")
    assert stub.Predict(predict_request([212.0]), timeout=30).model_spec.version.value == 3
    assert statuses(server)["2"][0] == "END"


def test_ports_open_only_after_the_first_load(tmp_path, start):
    base = tmp_path / "f2c"
    base.mkdir()
    grpc_port, rest_port = free_ports(2)
    server = start(base, "--file_system_poll_wait_seconds=1", ports=(grpc_port, rest_port), wait=False)
    server.wait_for_log(r"No versions of servable f2c found under base path", 60)
    for port in (grpc_port, rest_port):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    export(base, version=1)
    server.wait_ready(120)
    assert (server.grpc_port, server.rest_port) == (grpc_port, rest_port)
    assert server.predict({"instances": [212]}) == (200, {"predictions": [100.0]})


def test_newest_version_wins_and_removing_it_falls_back(tmp_path, start):
    base = tmp_path / "f2c"
    export(base, version=1)
    export(base, version=10)
    shutil.copytree(base / "10", base / "not-a-version")
    server = start(base, "--file_system_poll_wait_seconds=1")
    assert statuses(server) == {"10": ("AVAILABLE", "OK")}
    shutil.rmtree(base / "10")
    wait_until(lambda: statuses(server).get("1") == ("AVAILABLE", "OK"), 60, "version 1 loaded again")
    wait_until(lambda: statuses(server).get("10") == ("END", "OK"), 60, "version 10 unloaded")
    _, body = server.rest_json("GET", "/v1/models/f2c")
    # GetModelStatus lists the newest version first (ServableStateMonitor's order).
    assert [v["version"] for v in body["model_version_status"]] == ["10", "1"]


def test_sigterm_while_waiting_for_a_first_version_exits_zero(tmp_path):
    base = tmp_path / "f2c"
    base.mkdir()
    server = ModelServer(base, wait=False)
    server.wait_for_log(r"No versions of servable", 60)
    assert server.stop() == 0
    assert json.dumps(server.log()).count("Running gRPC") == 0
