"""Helpers for the tests that run on the project's local Kubernetes cluster (scripts/cluster.sh):
kubectl and helm against it, waiting for conditions, HTTP to the node's address, pods that run
one command. The cluster is reached only at the node's address inside the network namespace
that scripts/cluster.sh creates."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

# kubectl and helm, the timeline and the locust chart's headless runs are the cluster job's
# (loadtest/src/celsius_loadtest/kube.py, on the import path by conftest.py): one
# implementation for the job and these checks.
from celsius_loadtest.kube import CHARTS, Kube, wait_until

__all__ = ["CHARTS", "Kube", "wait_until"]

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "scripts" / "cluster.sh"


def cluster_script(*args: str, timeout: float = 1800, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(CLUSTER_SH), *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"scripts/cluster.sh {' '.join(args)} failed ({done.returncode}):\n"
                             f"{done.stdout}\n{done.stderr}")
    return done


def cluster_env() -> dict[str, str]:
    """KUBECONFIG, PATH (kubectl, helm) and CELSIUS_NODE_IP, from `scripts/cluster.sh env`."""
    env = dict(os.environ)
    for line in cluster_script("env").stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        value = shlex.split(value)[0] if value else ""
        env[name] = value.replace("$PATH", os.environ.get("PATH", ""))
    return env


ENV = cluster_env()
NODE_IP = ENV["CELSIUS_NODE_IP"]
KUBECONFIG = ENV["KUBECONFIG"]
STATE = Path(KUBECONFIG).parent


KUBE = Kube(ENV)
run = KUBE.run
kubectl = KUBE.kubectl
kubectl_json = KUBE.json
helm = KUBE.helm


def in_node(*cmd: str, check: bool = True) -> str:
    """A command inside the node's network namespace (iptables counters, routes)."""
    return cluster_script("exec", *cmd, check=check, timeout=60).stdout


def http(method: str, url: str, body: Any = None, timeout: float = 5) -> tuple[int, dict[str, str], Any]:
    """One request; (status, headers with lower-case names, JSON body or None)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw, status, headers = response.read(), response.status, response.headers
    except urllib.error.HTTPError as error:
        raw, status, headers = error.read(), error.code, error.headers
    text = raw.decode()
    return status, {k.lower(): v for k, v in headers.items()}, json.loads(text) if text else None


def node_url(port: int, path: str) -> str:
    return f"http://{NODE_IP}:{port}{path}"


def pod_command(namespace: str, name: str, image: str, script: str, timeout: float = 180) -> tuple[str, str]:
    """Runs a Python script in a pod of `image` (pull policy Never), waits for it to end and
    deletes it; returns (phase, log)."""
    manifest = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "main", "image": image, "imagePullPolicy": "Never",
                "command": ["python3", "-c", script],
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
            }],
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(manifest))
    try:
        phase = wait_until(f"pod {name} to finish", lambda: (
            kubectl("-n", namespace, "get", "pod", name, "-o", "jsonpath={.status.phase}")
            in ("Succeeded", "Failed") and kubectl("-n", namespace, "get", "pod", name, "-o",
                                                    "jsonpath={.status.phase}")), timeout)
        return phase, kubectl("-n", namespace, "logs", name)
    finally:
        kubectl("-n", namespace, "delete", "pod", name, "--wait=false", "--ignore-not-found")


def project_version() -> str:
    """The project version (the root CMakeLists.txt's `project(celsius VERSION x.y.z ...)`)."""
    for line in (REPO / "CMakeLists.txt").read_text().splitlines():
        if line.startswith("project(celsius VERSION "):
            return line.split()[2]
    raise AssertionError("no project version in CMakeLists.txt")
