"""Keeps server/api/openapi.json true: every answer of the real server, for every
documented operation and each of its documented statuses we can provoke, must match
the documented status list, headers and JSON schema; and every documented operation
must be exercised here.

Runs the release binary (CELSIUS_SERVER_BINARY, default build/release/celsius-server).
"""

from __future__ import annotations

import copy
import http.client
import json
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import jsonschema
import pytest

SERVER_DIR = Path(__file__).resolve().parents[2]
SPEC = json.loads((SERVER_DIR / "api" / "openapi.json").read_text())
BINARY = os.environ.get("CELSIUS_SERVER_BINARY", str(SERVER_DIR / "build" / "release" / "celsius-server"))

exercised: set[tuple[str, str]] = set()


@pytest.fixture(scope="module")
def server():
    proc = subprocess.Popen(
        [BINARY, "--host", "127.0.0.1", "--port", "0", "--max-batch", "4", "--max-body-bytes", "2048",
         "--max-header-bytes", "2048"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    port = None
    for line in proc.stdout:
        match = re.search(r'"msg":"listening".*"port":(\d+)', line)
        if match:
            port = int(match.group(1))
            break
    assert port, "server did not start"
    drain = threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True)
    drain.start()
    yield port
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0


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
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
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

    for name, header in documented.get("headers", {}).items():
        if "$ref" in header:
            header = SPEC["components"]["headers"][header["$ref"].rsplit("/", 1)[1]]
        value = res.getheader(name)
        if header.get("required"):
            assert value is not None, f"missing header {name}"
        if value is not None:
            jsonschema.validate(value, schema_with_components(header["schema"]))

    got_type = res.getheader("Content-Type")
    content = documented.get("content", {})
    assert got_type in content, f"{method} {path} {res.status}: content type {got_type} not in {list(content)}"
    schema = content[got_type]["schema"]
    if got_type.startswith("application/json"):
        jsonschema.validate(json.loads(data), schema_with_components(schema),
                            cls=jsonschema.Draft202012Validator)
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


def test_every_documented_operation_was_exercised(server):
    documented = {(method, path) for path, item in SPEC["paths"].items() for method in item}
    missing = documented - exercised
    assert not missing, f"documented but never exercised: {sorted(missing)}"
