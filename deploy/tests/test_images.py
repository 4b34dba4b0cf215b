"""The images for real: containers started from the built images (scripts/build-images.sh
first), reached from the host over published ports, checked for the properties the
deployment relies on. Docker's CLI is driven directly; every container and network made
here is removed afterwards."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest

TAG = os.environ.get("CELSIUS_IMAGE_TAG", "dev")  # scripts/build-images.sh tags the same
PREFIX = f"celsius-test-{uuid.uuid4().hex[:8]}"


def docker(*args: str, check: bool = True, timeout: float = 300) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


def inspect(name: str) -> dict:
    return json.loads(docker("inspect", name))[0]


def host_port(container: str, port: int) -> int:
    return int(docker("port", container, f"{port}/tcp").splitlines()[0].rsplit(":", 1)[1])


def http(method: str, url: str, body: dict | None = None, timeout: float = 5) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for(url: str, status: int = 200, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = http("GET", url, timeout=2)
            if last[0] == status:
                return
        except OSError as error:
            last = error
        time.sleep(0.3)
    raise AssertionError(f"{url} never answered {status}; last: {last}")


def wait_for_model(base: str, timeout: float = 180) -> None:
    """Until the service's /readyz reports the model available (/readyz is 200 whatever the
    model server's state; its `model` member follows it: server/README.md)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = http("GET", base + "/readyz", timeout=2)
            if last[0] == 200 and isinstance(last[1], dict) and last[1].get("model", {}).get("available") is True:
                return
        except OSError as error:
            last = error
        time.sleep(0.3)
    raise AssertionError(f"{base}/readyz never reported the model available; last: {last}")


@pytest.fixture(scope="module")
def cleanup():
    made: list[tuple[str, str]] = []
    yield made
    for kind, name in reversed(made):
        docker(kind, "rm", "-f", name, check=False) if kind != "network" else docker("network", "rm", name, check=False)


def run(cleanup, name: str, *args: str) -> str:
    docker("run", "-d", "--name", name, *args)
    cleanup.append(("container", name))
    return name


@pytest.fixture(scope="module")
def server(cleanup):
    name = run(cleanup, f"{PREFIX}-server", "--read-only", "-p", "127.0.0.1::8000", f"celsius/server:{TAG}")
    base = f"http://127.0.0.1:{host_port(name, 8000)}"
    wait_for(base + "/healthz", timeout=30)
    return name, base


def test_server_answers_from_the_host(server):
    _, base = server
    assert http("GET", base + "/healthz") == (200, {"status": "ok"})
    status, body = http("POST", base + "/convert", {"fahrenheit": [212, -459.67]})
    assert status == 200 and body["celsius"] == [100, -273.15]
    # No model server configured: ready, and the model endpoint says so.
    assert http("GET", base + "/readyz")[0] == 200
    assert http("POST", base + "/convert/model", {"fahrenheit": 1})[1]["error"]["code"] == "model_not_configured"


def test_server_runs_as_non_root_with_a_read_only_root_filesystem(server):
    name, _ = server
    info = inspect(name)
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert info["Config"]["User"] == "10001:10001"
    assert docker("exec", name, "id", "-u") == "10001"
    assert docker("exec", name, "sh", "-c", "touch /x 2>&1 || true").endswith("Read-only file system")
    assert info["Config"]["Env"] and "CELSIUS_PORT=8000" in info["Config"]["Env"]
    assert json.loads(docker("image", "inspect", f"celsius/server:{TAG}"))[0]["Config"]["ExposedPorts"] == {
        "8000/tcp": {}}


def test_docker_stop_drains_and_exits_zero(cleanup):
    name = run(cleanup, f"{PREFIX}-stop", "-p", "127.0.0.1::8000", "-e", "CELSIUS_SHUTDOWN_GRACE_MS=5000",
               f"celsius/server:{TAG}")
    wait_for(f"http://127.0.0.1:{host_port(name, 8000)}/healthz", timeout=30)
    started = time.monotonic()
    docker("stop", "-t", "10", name)
    took = time.monotonic() - started
    state = inspect(name)["State"]
    assert state["ExitCode"] == 0, state
    assert took < 6, f"docker stop took {took:.1f} s (SIGKILL after 10 s would mean SIGTERM was lost)"
    logs = docker("logs", name)
    assert '"msg":"shutting down"' in logs and '"signal":"SIGTERM"' in logs


@pytest.fixture(scope="module")
def model_volume(cleanup):
    volume = f"{PREFIX}-models"
    # The model image's default command copies the SavedModel into the shared volume.
    docker("run", "--rm", "-v", f"{volume}:/shared", f"celsius/model:{TAG}", timeout=120)
    cleanup.append(("volume", volume))
    return volume


def test_model_server_image_is_the_cpp_server_and_tensorflows_c_api_only():
    image = f"celsius/model-server:{TAG}"
    listing = docker("run", "--rm", "--entrypoint", "/bin/sh", image, "-c",
                     "ls /usr/local/lib/tensorflow; command -v python3 python || echo no-python")
    assert listing.split() == ["libtensorflow_cc.so.2", "libtensorflow_framework.so.2", "no-python"], listing
    config = json.loads(docker("image", "inspect", image))[0]["Config"]
    assert config["User"] == "10001:10001"
    assert {"MODEL_NAME=model", "MODEL_BASE_PATH=/models"} <= set(config["Env"])
    assert config["ExposedPorts"] == {"8500/tcp": {}, "8501/tcp": {}}
    version = docker("run", "--rm", image, "--version", timeout=120)
    assert "TensorFlow ModelServer: celsius-model-server" in version and "TensorFlow Library: 2." in version


def test_model_server_read_only_non_root_and_docker_stop_drains(cleanup, model_volume):
    # The official image's conventions: MODEL_BASE_PATH/MODEL_NAME, REST on 8501. No writable
    # directory at all: TensorFlow's C API writes nothing when it loads and runs a SavedModel.
    name = run(cleanup, f"{PREFIX}-ms", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
               "-p", "127.0.0.1::8501", "-v", f"{model_volume}:/shared:ro", "-e", "MODEL_NAME=f2c",
               "-e", "MODEL_BASE_PATH=/shared", f"celsius/model-server:{TAG}")
    base = f"http://127.0.0.1:{host_port(name, 8501)}"
    wait_for(base + "/v1/models/f2c", timeout=180)
    assert http("GET", base + "/v1/models/f2c")[1]["model_version_status"][0]["state"] == "AVAILABLE"
    assert http("POST", base + "/v1/models/f2c:predict", {"instances": [212, -40]}) == (
        200, {"predictions": [100.0, -40.0]})
    assert docker("exec", name, "id", "-u") == "10001"
    started = time.monotonic()
    docker("stop", "-t", "10", name)
    took = time.monotonic() - started
    state = inspect(name)["State"]
    assert state["ExitCode"] == 0, state
    assert took < 8, f"docker stop took {took:.1f} s"
    logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True, timeout=60)
    assert "Received signal 15 (SIGTERM)" in logs.stdout + logs.stderr and "Server stopped" in logs.stderr


def test_server_and_model_server_on_a_user_network(cleanup, model_volume):
    network = f"{PREFIX}-net"
    docker("network", "create", network)
    cleanup.append(("network", network))
    volume = model_volume
    run(cleanup, f"{PREFIX}-tfs", "--network", network, "--network-alias", "tf-serving", "--read-only",
        "-v", f"{volume}:/shared:ro", "-e", "MODEL_NAME=f2c", "-e", "MODEL_BASE_PATH=/shared",
        f"celsius/model-server:{TAG}")
    name = run(cleanup, f"{PREFIX}-server-model", "--network", network, "--read-only", "-p", "127.0.0.1::8000",
               "-e", "CELSIUS_MODEL_SERVER=grpc://tf-serving:8500", f"celsius/server:{TAG}")
    base = f"http://127.0.0.1:{host_port(name, 8000)}"
    wait_for_model(base)
    status, body = http("POST", base + "/convert/model", {"fahrenheit": [98.6, 212]})
    assert status == 200, body
    assert body["model"] == {"name": "f2c", "version": "1"}
    assert body["celsius"] == http("POST", base + "/convert", {"fahrenheit": [98.6, 212]})[1]["celsius"]


def test_every_image_has_oci_labels_and_a_numeric_non_root_user():
    for image in ("server", "model-server", "model", "loadtest"):
        config = json.loads(docker("image", "inspect", f"celsius/{image}:{TAG}"))[0]["Config"]
        labels = config["Labels"] or {}
        for key in ("org.opencontainers.image.source", "org.opencontainers.image.version",
                    "org.opencontainers.image.revision"):
            assert labels.get(key), (image, key)
        assert config["User"] == "10001:10001", image


def test_loadtest_image_runs_locust():
    out = docker("run", "--rm", f"celsius/loadtest:{TAG}", "--version", timeout=120)
    assert out.startswith("locust 2.47.0")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_compose_stack_with_the_stand_in():
    """deploy/compose.yaml + the stand-in override (celsius/model-server), up for real: the model
    is copied by the model image, the service answers /convert/model from the host, Locust's
    web UI is up."""
    from pathlib import Path

    deploy = Path(__file__).resolve().parents[1]
    project = f"{PREFIX}-compose"
    port, web = free_port(), free_port()
    env = {"CELSIUS_PORT": str(port), "LOCUST_WEB_PORT": str(web), "CELSIUS_VERSION": TAG,
           "PATH": "/usr/bin:/bin:/usr/local/bin"}
    # Debian's docker-compose 1.29, or Compose v2 where that is what the machine has.
    base_command = ["docker-compose"] if shutil.which("docker-compose") else ["docker", "compose"]
    compose = [*base_command, "-p", project, "-f", str(deploy / "compose.yaml"), "-f",
               str(deploy / "compose.stand-in.yaml")]

    def run_compose(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([*compose, *args], capture_output=True, text=True, timeout=timeout, env=env)

    assert run_compose("config", "-q").returncode == 0
    try:
        up = run_compose("up", "-d", "--scale", "locust-worker=1")
        assert up.returncode == 0, up.stderr
        base = f"http://127.0.0.1:{port}"
        wait_for_model(base)
        # The first model call of a fresh model server can exceed the service's 1 s model
        # timeout on a busy machine (TensorFlow builds its executor then): retry for a while.
        deadline = time.monotonic() + 60
        while True:
            status, body = http("POST", base + "/convert/model", {"fahrenheit": 212}, timeout=10)
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert status == 200 and body["celsius"] == 100 and body["model"]["name"] == "f2c", body
        deadline = time.monotonic() + 120
        while True:  # Locust's web UI comes up on its own schedule
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web}/", timeout=10) as page:
                    assert page.status == 200 and b"Locust" in page.read()
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        run_compose("down", "-v", "--remove-orphans")
