"""The model server tests' harness: the real celsius-model-server binary
(CELSIUS_MODEL_SERVER_BINARY, default build/release/) on free loopback ports, the model export,
REST and gRPC helpers, Prometheus sample values."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "model" / "src"))  # celsius_model: the export and the reference formula

BINARY = Path(os.environ.get("CELSIUS_MODEL_SERVER_BINARY", REPO / "build" / "release" / "celsius-model-server"))


def export(base: Path, version: int = 1) -> Path:
    """python -m celsius_model export, in-process (the version folder appears atomically)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from celsius_model import export as export_model

    return export_model(base, version=version)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class ModelServer:
    """celsius-model-server as a child process; log lines are collected continuously."""

    def __init__(self, base: Path, *extra: str, name: str = "f2c", ports: tuple[int, int] | None = None,
                 wait: bool = True) -> None:
        port_args = (["--port", str(ports[0]), "--rest_api_port", str(ports[1])] if ports else
                     ["--port", "0", "--rest_api_port", "0", "--celsius_free_ports"])
        self.argv = [str(BINARY), *port_args, "--celsius_bind_address", "127.0.0.1", "--model_name", name,
                     "--model_base_path", str(base), *extra]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="1"))
        self.lines: list[str] = []
        self.grpc_port = self.rest_port = 0
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if wait:
            self.wait_ready()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if m := re.search(r"Running gRPC ModelServer at [\d.]+:(\d+)", line):
                self.grpc_port = int(m.group(1))
            if m := re.search(r"Exporting HTTP/REST API at:localhost:(\d+)", line):
                self.rest_port = int(m.group(1))
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 120) -> None:
        assert self._ready.wait(timeout) and self.rest_port, "model server did not start:\n" + self.log()

    def log(self) -> str:
        return "".join(self.lines)

    def wait_for_log(self, pattern: str, timeout: float = 60) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := re.search(pattern, line):
                    return m
            time.sleep(0.05)
        raise AssertionError(f"no log line matches {pattern!r}:\n{self.log()}")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    # REST
    def rest(self, method: str, path: str, body: bytes | None = None, timeout: float = 30,
             headers: dict | None = None) -> tuple[int, bytes, dict]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.rest_port}{path}", data=body, method=method,
                                         headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)

    def rest_json(self, method: str, path: str, payload=None, timeout: float = 30) -> tuple[int, dict]:
        body = payload if isinstance(payload, bytes) or payload is None else json.dumps(payload).encode()
        status, data, _ = self.rest(method, path, body, timeout)
        return status, json.loads(data)

    def predict(self, payload, path: str = "/v1/models/f2c:predict", timeout: float = 30) -> tuple[int, dict]:
        return self.rest_json("POST", path, payload, timeout)

    def channel(self, **options) -> grpc.Channel:
        return grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}", options=list(options.items()))

    def metrics(self, path: str = "/monitoring/prometheus/metrics") -> str:
        status, data, _ = self.rest("GET", path)
        assert status == 200, data
        return data.decode()


def metric_value(page: str, name: str) -> float:
    """The value of one sample line, e.g. ':tensorflow:serving:request_count{model_name="f2c",status="OK"}'."""
    for line in page.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
