"""Keeps server/api/openapi.json true: every answer of the real server, for every
documented operation and each of its documented statuses we can provoke, must match
the documented status list, headers and JSON schema; every documented operation must be
exercised here; and schemathesis, with all its checks, generates requests from the
document against the real server (with a real model server behind /convert/model) and
must find nothing.

Runs the release binary (CELSIUS_SERVER_BINARY, default build/release/celsius-server).
"""

from __future__ import annotations

import copy
import http.client
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import jsonschema
import pytest

SERVER_DIR = Path(__file__).resolve().parents[2]
SPEC = json.loads((SERVER_DIR / "api" / "openapi.json").read_text())
BINARY = os.environ.get("CELSIUS_SERVER_BINARY", str(SERVER_DIR.parent / "build" / "release" / "celsius-server"))

exercised: set[tuple[str, str]] = set()


REPO = SERVER_DIR.parent


class Process:
    """A child process whose output is read continuously; ready once a line matches `ready`
    (its first group is the port), with a deadline so a missing line fails instead of hanging."""

    def __init__(self, argv: list[str], ready: str, env: dict | None = None, timeout: float = 120) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self.port = 0
        found = threading.Event()

        def read() -> None:
            for line in self.proc.stdout:
                self.lines.append(line)
                match = re.search(ready, line)
                if match and not self.port:
                    self.port = int(match.group(1))
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(timeout) or not self.port:
            self.proc.kill()
            raise AssertionError(f"{argv[0]} did not start:\n" + "".join(self.lines[-20:]))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def start_service(*args: str, small_limits: bool = True) -> Process:
    """The service on a free port; with `small_limits`, limits small enough to provoke 413 and 431 cheaply."""
    limits = ["--max-batch", "4", "--max-body-bytes", "2048", "--max-header-bytes", "2048"] if small_limits else []
    return Process([BINARY, "--host", "127.0.0.1", "--port", "0", *limits, *args], r'"msg":"listening".*"port":(\d+)')


@pytest.fixture(scope="module")
def server():
    service = start_service()
    yield service.port
    assert service.stop() == 0


MODEL_SERVER = os.environ.get("CELSIUS_MODEL_SERVER_BINARY", str(REPO / "build" / "release" / "celsius-model-server"))


@pytest.fixture(scope="module")
def model_server(tmp_path_factory):
    """celsius-model-server (TF Serving's protocols, real TensorFlow) with the exported model;
    its gRPC port."""
    env = {"PYTHONPATH": str(REPO / "model" / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    base = tmp_path_factory.mktemp("model") / "f2c"
    subprocess.run([sys.executable, "-m", "celsius_model", "export", "--output", str(base)], check=True,
                   env={**os.environ, **env}, capture_output=True)
    model = Process([MODEL_SERVER, "--port", "0", "--celsius_free_ports", "--celsius_bind_address", "127.0.0.1",
                     "--model_name", "f2c", "--model_base_path", str(base)],
                    r"Running gRPC ModelServer at [\d.]+:(\d+)", env)
    yield model.port
    assert model.stop() == 0


def wait_model_state(port: int, available: bool, timeout: float = 60) -> None:
    """Waits until /readyz reports the model as `available` (the service itself is ready
    whatever the model server does)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res, data = call(port, "GET", "/readyz")
        if res.status == 200 and json.loads(data).get("model", {}).get("available") == available:
            return
        time.sleep(0.1)
    raise AssertionError(f"the service never reported the model available={available}")


def operation_for(path: str) -> str:
    """The spec path template that a concrete path matches."""
    if path in SPEC["paths"]:
        return path
    for template in SPEC["paths"]:
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path):
            return template
    raise AssertionError(f"{path} is not documented")


def schema_with_components(schema: dict) -> dict:
    full = copy.deepcopy(schema)
    full["components"] = SPEC["components"]
    full["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return full


def call(port: int, method: str, target: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, target, body=body, headers=headers or {})
    res = conn.getresponse()
    data = res.read()
    conn.close()
    return res, data


def check(port: int, method: str, target: str, expected_status: int, body=None, headers=None,
          content_type="application/json"):
    hdrs = dict(headers or {})
    if body is not None and content_type:
        hdrs["Content-Type"] = content_type
    raw = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    res, data = call(port, method, target, raw, hdrs)
    assert res.status == expected_status, (method, target, res.status, data[:300])

    validate(method, target, res, data)
    return res, data


def resolve(obj: dict) -> dict:
    """The object a local `$ref` (`#/components/...`) points at, or `obj` itself."""
    while "$ref" in obj:
        node = SPEC
        for part in obj["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        obj = node
    return obj


def validate(method: str, target: str, res, data: bytes) -> None:
    """Checks one real answer against what the document says of that operation and status."""
    path = operation_for(target.split("?")[0])
    operation = SPEC["paths"][path].get(method.lower())
    if operation is None and res.status == 405:
        # A method the path does not declare: its 405 is documented on the declared ones.
        operation = next(iter(SPEC["paths"][path].values()))
    else:
        assert operation, f"{method} {path} undocumented"
        exercised.add((method.lower(), path))
    documented = operation["responses"].get(str(res.status))
    assert documented, f"{method} {path} answered {res.status}, not documented"
    documented = resolve(documented)

    for name, header in documented.get("headers", {}).items():
        header = resolve(header)
        value = res.getheader(name)
        if header.get("required"):
            assert value is not None, f"missing header {name}"
        if value is not None:
            jsonschema.validate(value, schema_with_components(header["schema"]))

    if method == "HEAD":
        assert data == b"", f"HEAD {path} {res.status} has a body"
        assert "content" not in documented, f"HEAD {path} {res.status} documents a body"
        return
    got_type = res.getheader("Content-Type")
    content = documented.get("content", {})
    assert got_type in content, f"{method} {path} {res.status}: content type {got_type} not in {list(content)}"
    schema = content[got_type]["schema"]
    if got_type.startswith("application/json"):
        # Every JSON answer is valid UTF-8 (a strict decode) and matches its schema.
        jsonschema.validate(json.loads(data.decode("utf-8", errors="strict")), schema_with_components(schema),
                            cls=jsonschema.Draft202012Validator)


def raw_exchange(port: int, request: bytes, method: str) -> tuple[http.client.HTTPResponse, bytes]:
    """Sends raw bytes (requests http.client would not send) and reads one answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request)
        res = http.client.HTTPResponse(sock, method=method)
        res.begin()
        return res, res.read()


def check_raw(port: int, request: bytes, method: str, target: str, expected_status: int):
    res, data = raw_exchange(port, request, method)
    assert res.status == expected_status, (request[:200], res.status, data[:300])
    validate(method, target, res, data)
    return res, data


def test_info_health_ready(server):
    check(server, "GET", "/", 200)
    check(server, "GET", "/healthz", 200)
    check(server, "GET", "/readyz", 200)
    check(server, "POST", "/healthz", 405, body={})


def test_convert_post(server):
    check(server, "POST", "/convert", 200, body={"fahrenheit": 98.6})
    check(server, "POST", "/convert", 200, body={"fahrenheit": [32, -459.67, 212]})
    check(server, "POST", "/convert", 400, body=b"{", content_type="application/json")
    check(server, "POST", "/convert", 413, body={"fahrenheit": [1, 2, 3, 4, 5]})
    check(server, "POST", "/convert", 413, body=b" " * 4096, content_type="application/json")
    check(server, "POST", "/convert", 415, body=b"fahrenheit=1", content_type="text/plain")
    check(server, "POST", "/convert", 422, body={"fahrenheit": "hot"})
    check(server, "POST", "/convert", 422, body={"fahrenheit": [0, -500]})
    check(server, "PUT", "/convert", 405, body={})
    res, _ = check(server, "GET", "/", 431, headers={"X-Padding": "a" * 4000})


def test_convert_get(server):
    check(server, "GET", "/convert?fahrenheit=-40", 200)
    check(server, "GET", "/convert?fahrenheit=cold", 422)


def test_metrics_openapi_docs(server):
    check(server, "GET", "/metrics", 200)
    _, data = check(server, "GET", "/openapi.json", 200)
    assert json.loads(data) == SPEC
    check(server, "GET", "/docs", 200)


def test_docs_assets(server):
    res, _ = call(server, "GET", "/docs")
    bundled = b"swagger-ui-bundle.js" in _
    if bundled:
        check(server, "GET", "/docs/swagger-ui-bundle.js", 200)
        res, _ = check(server, "GET", "/docs/swagger-ui.css", 200)
        assert res.getheader("Content-Type") == "text/css; charset=utf-8"
    else:
        check(server, "GET", "/docs/swagger-ui-bundle.js", 404)
    check(server, "POST", "/docs/swagger-ui-bundle.js", 405 if bundled else 404, body={})


def test_convert_model_without_a_model_server(server):
    check(server, "POST", "/convert/model", 503, body={"fahrenheit": 1})
    check(server, "GET", "/convert/model?fahrenheit=1", 503)
    check(server, "POST", "/convert/model", 422, body={"fahrenheit": -500})
    check(server, "POST", "/convert/model", 413, body={"fahrenheit": [1, 2, 3, 4, 5]})
    check(server, "POST", "/convert/model", 415, body=b"x", content_type="text/plain")
    check(server, "POST", "/convert/model", 400, body=b"{", content_type="application/json")
    check(server, "GET", "/convert/model?fahrenheit=x", 422)
    check(server, "DELETE", "/convert/model", 405)


def test_convert_model_answers_and_faults(model_server):
    target = f"grpc://127.0.0.1:{model_server}"
    # A generous deadline where the deadline is not what is checked (a busy machine must not
    # turn a 200 or 502 into a 504).
    services = {
        "ok": start_service("--model-server", target, "--model-timeout-ms", "30000"),
        "error": start_service("--model-server", target, "--model-name", "nope", "--model-timeout-ms", "30000"),
    }
    # A socket that listens and never answers: the REST client's deadline passes.
    silent = socket.create_server(("127.0.0.1", 0))
    services["timeout"] = start_service("--model-server", f"http://127.0.0.1:{silent.getsockname()[1]}",
                                        "--model-timeout-ms", "200")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead = unused.getsockname()[1]
    services["down"] = start_service("--model-server", f"grpc://127.0.0.1:{dead}", "--model-timeout-ms", "300")
    try:
        ok = services["ok"].port
        wait_model_state(ok, True)
        check(ok, "POST", "/convert/model", 200, body={"fahrenheit": 98.6})
        check(ok, "POST", "/convert/model", 200, body={"fahrenheit": [32, -459.67, 212]})
        check(ok, "GET", "/convert/model?fahrenheit=-40", 200)
        check(ok, "GET", "/readyz", 200)
        check(services["error"].port, "POST", "/convert/model", 502, body={"fahrenheit": 1})
        check(services["timeout"].port, "POST", "/convert/model", 504, body={"fahrenheit": 1})
        check(services["down"].port, "POST", "/convert/model", 503, body={"fahrenheit": 1})
        check(services["down"].port, "GET", "/convert/model?fahrenheit=1", 503)
        wait_model_state(services["down"].port, False)
        check(services["down"].port, "GET", "/readyz", 200)
    finally:
        for service in services.values():
            assert service.stop() == 0
        silent.close()


def test_head_everywhere_get_is(server):
    for path, item in SPEC["paths"].items():
        if "get" not in item:
            continue
        target = path.replace("{asset}", "swagger-ui.css") + ("?fahrenheit=-40" if path.startswith("/convert") else "")
        get, body = call(server, "GET", target)
        head, _ = check(server, "HEAD", target, get.status)
        if path != "/metrics":  # its counters move between the two calls
            assert head.getheader("Content-Length") == str(len(body)), target
        assert head.getheader("Content-Type") == get.getheader("Content-Type"), target
    # Errors too: the GET error's status and Content-Length, no body.
    _, body = call(server, "GET", "/convert?fahrenheit=x")
    res, _ = check(server, "HEAD", "/convert?fahrenheit=x", 422)
    assert res.getheader("Content-Length") == str(len(body))
    check(server, "HEAD", "/convert/model?fahrenheit=1", 503)


def test_transport_errors_on_every_route(server):
    """400 (Host, framing), 413 (a body over --max-body-bytes, GET included), 431 and 501
    can answer any operation; each is documented on each and matches its schema."""
    for path, item in SPEC["paths"].items():
        target = path.replace("{asset}", "swagger-ui.css")
        for method in item:
            verb = method.upper()
            check_raw(server, f"{verb} {target} HTTP/1.1\r\n\r\n".encode(), verb, target, 400)  # no Host
            check_raw(server, f"{verb} {target} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".encode(), verb, target, 400)
            check_raw(server, f"{verb} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".encode(), verb,
                      target, 413)
            check_raw(server, f"{verb} {target} HTTP/1.1\r\nHost: x\r\nX-Pad: {'a' * 3000}\r\n\r\n".encode(), verb,
                      target, 431)
            check_raw(server, f"{verb} {target} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n".encode(), verb,
                      target, 400)
            check_raw(server, f"{verb} {target} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                      "0\r\n\r\n".encode(), verb, target, 501)


def test_request_timeout_is_408():
    service = start_service("--request-timeout-ms", "300")
    try:
        for path, item in SPEC["paths"].items():
            target = path.replace("{asset}", "swagger-ui.css")
            for method in item:
                verb = method.upper()
                # The head arrives, the declared body never does.
                check_raw(service.port, f"{verb} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n".encode(),
                          verb, target, 408)
    finally:
        assert service.stop() == 0


def test_fahrenheit_maximum_is_the_services_boundary(server):
    """The document's `maximum` is the largest value the service accepts (issue 10, item 10:
    ?fahrenheit=1e308 was refused although the schema had no maximum)."""
    def query(value: float) -> str:
        return "/convert?fahrenheit=" + urllib.parse.quote(repr(value))  # "e+307": + must be %2B

    maximum = SPEC["components"]["schemas"]["Fahrenheit"]["maximum"]
    above = math.nextafter(maximum, math.inf)
    check(server, "GET", query(maximum), 200)
    check(server, "POST", "/convert", 200, body={"fahrenheit": maximum})
    check(server, "GET", query(above), 422)
    check(server, "POST", "/convert", 422, body={"fahrenheit": [0, above]})
    check(server, "GET", "/convert?fahrenheit=1e308", 422)
    minimum = SPEC["components"]["schemas"]["Fahrenheit"]["minimum"]
    check(server, "GET", query(minimum), 200)
    check(server, "GET", query(math.nextafter(minimum, -math.inf)), 422)


def test_schemathesis_finds_nothing(model_server, tmp_path):
    """schemathesis (every check, all phases) against the real service with the real model
    server behind /convert/model: it must report no failure. Bounded: a fixed number of
    examples per operation, a fixed seed, and a deadline on the whole run."""
    service = start_service("--model-server", f"grpc://127.0.0.1:{model_server}", "--model-timeout-ms", "20000",
                            small_limits=False)
    try:
        wait_model_state(service.port, True)
        binary = Path(sys.executable).parent / "schemathesis"
        config = Path(__file__).parent / "schemathesis.toml"  # what counts as a rejection: + 413
        result = subprocess.run(
            [str(binary), "--no-color", "--config-file", str(config), "run",
             f"http://127.0.0.1:{service.port}/openapi.json", "--checks", "all",
             "--max-examples", os.environ.get("CELSIUS_SCHEMATHESIS_EXAMPLES", "25"), "--seed", "20261126",
             "--workers", "1", "--request-timeout", "30", "--suppress-health-check", "too_slow"],
            capture_output=True, text=True, timeout=900, cwd=tmp_path)  # its .schemathesis/ stays out of the clone
        assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
        assert "No issues found" in result.stdout, result.stdout[-5000:]
    finally:
        assert service.stop() == 0


def test_every_documented_operation_was_exercised(server):
    documented = {(method, path) for path, item in SPEC["paths"].items() for method in item}
    missing = documented - exercised
    assert not missing, f"documented but never exercised: {sorted(missing)}"
