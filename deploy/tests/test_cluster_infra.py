"""The local Kubernetes cluster itself (scripts/cluster.sh), before any chart: it is up and
idempotent, a pod runs a project image, cluster DNS resolves a Service (and nothing outside the
cluster), the metrics API serves, nothing can leave the node (egress dropped, registries sent to
a closed port). Run by `scripts/test-all.sh cluster` after `scripts/cluster.sh up` and
`load-images`; test_cluster_down.py takes the cluster down and checks nothing is left."""

from __future__ import annotations

import json
import re
import time

import pytest

from clusterlib import (NODE_IP, cluster_script, in_node, kubectl, kubectl_json, pod_command, project_version,
                        wait_until)

NAMESPACE = "celsius-infra-test"
VERSION = project_version()
LOADTEST_IMAGE = f"celsius/loadtest:{VERSION}"
SERVER_IMAGE = f"celsius/server:{VERSION}"
# Addresses that must be unreachable from a pod: one outside the machine (TEST-NET-3, RFC 5737:
# reserved for documentation, routed nowhere) and the host's end of the node's veth.
OUTSIDE = "203.0.113.1"
HOST_SIDE = "10.213.0.1"


@pytest.fixture(scope="module", autouse=True)
def namespace():
    kubectl("create", "namespace", NAMESPACE, "--dry-run=client", "-o", "yaml")
    kubectl("apply", "-f", "-", input=kubectl("create", "namespace", NAMESPACE, "--dry-run=client", "-o", "yaml"))
    wait_until("the namespace's default service account",
               lambda: kubectl("-n", NAMESPACE, "get", "serviceaccount", "default", check=False), 60)
    yield
    kubectl("delete", "namespace", NAMESPACE, "--wait=false", "--ignore-not-found")


def test_up_is_idempotent_and_the_node_runs_v1_34():
    started = time.monotonic()
    again = cluster_script("up")
    assert "already up" in again.stderr, again.stderr
    print(f"second `up`: {time.monotonic() - started:.1f} s, no change")
    version = json.loads(kubectl("version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"] == "v1.34.2", version
    node = kubectl_json("get", "node", "celsius-node")
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"][0]
    assert ready["status"] == "True", ready
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == NODE_IP
    print(f"node celsius-node Ready, kubelet {node['status']['nodeInfo']['kubeletVersion']}, "
          f"runtime {node['status']['nodeInfo']['containerRuntimeVersion']}, "
          f"allocatable cpu {node['status']['allocatable']['cpu']}, InternalIP {NODE_IP}")


def test_status_reports_every_component():
    status = cluster_script("status").stdout
    for component in ("containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                      "kube-proxy", "kubelet"):
        assert re.search(rf"^{component}: running \(pid \d+\)$", status, re.M), status


def test_a_pod_runs_a_project_image_and_reaches_a_service_by_its_dns_name():
    kubectl("-n", NAMESPACE, "run", "server", f"--image={SERVER_IMAGE}", "--image-pull-policy=Never",
            "--port=8000", "--labels=app=server", "--expose")
    kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", "pod/server", "--timeout=120s")
    script = (
        "import json, socket, time, urllib.request\n"
        f"name = 'server.{NAMESPACE}.svc.cluster.local'\n"
        "address = socket.gethostbyname(name)\n"
        "request = urllib.request.Request('http://server:8000/convert', data=b'{\"fahrenheit\": [212]}',\n"
        "                                 headers={'Content-Type': 'application/json'})\n"
        # A Service just created: kube-proxy programs it within seconds, not at once.
        "errors, deadline = [], time.monotonic() + 60\n"
        "while True:\n"
        "    try:\n"
        "        with urllib.request.urlopen(request, timeout=10) as response:\n"
        "            body = json.load(response)\n"
        "        break\n"
        "    except OSError as error:\n"
        "        errors.append(repr(error))\n"
        "        if time.monotonic() > deadline:\n"
        "            raise SystemExit(f'{errors} (addresses of server: {socket.getaddrinfo(\"server\", 8000)})')\n"
        "        time.sleep(1)\n"
        "print(json.dumps({'address': address, 'body': body, 'errors_before': errors, 'kubernetes':\n"
        "                  socket.gethostbyname('kubernetes.default.svc.cluster.local')}))\n"
        "try:\n"
        "    socket.gethostbyname('celsius-outside-name.example')\n"
        "    print('OUTSIDE RESOLVED')\n"
        "except socket.gaierror as error:\n"
        "    print('outside name not resolved:', error)\n"
    )
    phase, log = pod_command(NAMESPACE, "dns-client", LOADTEST_IMAGE, script)
    assert phase == "Succeeded", log
    result = json.loads(log.splitlines()[0])
    service_ip = kubectl("-n", NAMESPACE, "get", "service", "server", "-o", "jsonpath={.spec.clusterIP}")
    assert result["address"] == service_ip
    assert result["kubernetes"] == "10.213.2.1"
    assert result["body"]["celsius"] == [100]
    assert "outside name not resolved" in log, "CoreDNS must not forward names outside the cluster"
    print(f"pod ran {LOADTEST_IMAGE}; server.{NAMESPACE} -> {service_ip}; /convert 212 F -> 100 C from "
          f"app {result['body']['app_id']} (failed attempts first: {result['errors_before']}); {log.splitlines()[1]}")


def test_the_metrics_api_serves_node_and_pod_usage():
    node = json.loads(kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/celsius-node"))
    assert node["usage"]["cpu"] and node["usage"]["memory"]
    pods = wait_until("pod metrics for kube-system", lambda: json.loads(kubectl(
        "get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/kube-system/pods"))["items"], 90)
    print(f"node usage {node['usage']}; {len(pods)} kube-system pods with metrics, e.g. "
          f"{pods[0]['metadata']['name']}: {pods[0]['containers'][0]['usage']}")


def drop_count() -> int:
    """Packets the node's egress rule has dropped so far."""
    rules = in_node("iptables", "-w", "-t", "raw", "-L", "CELSIUS-EGRESS", "-v", "-x", "-n")
    drop = [line.split() for line in rules.splitlines() if " DROP " in f" {line} "]
    assert len(drop) == 1, rules
    return int(drop[0][0])


@pytest.mark.parametrize("address", [OUTSIDE, HOST_SIDE])
def test_a_pod_cannot_reach_anything_outside_the_cluster(address):
    assert not in_node("ip", "route", "show", "default").strip(), "the node must have no default route"
    before = drop_count()
    script = (
        "import socket, time\n"
        "started = time.monotonic()\n"
        "try:\n"
        f"    socket.create_connection(('{address}', 80), timeout=3)\n"
        "    print('CONNECTED')\n"
        "except OSError as error:\n"
        "    print(type(error).__name__, error, round(time.monotonic() - started, 1))\n"
    )
    phase, log = pod_command(NAMESPACE, f"egress-{address.replace('.', '-')}", LOADTEST_IMAGE, script)
    dropped = drop_count() - before
    assert phase == "Succeeded", log
    # Dropped, not refused or unreachable: nothing answered, the SYN went nowhere.
    assert log.startswith("TimeoutError"), log
    assert dropped >= 1, f"the egress rule dropped nothing: {log}"
    print(f"pod -> {address}:80: {log.strip()}; the node's egress rule dropped {dropped} packet(s)")


def test_images_are_never_pulled_from_a_registry():
    name = "pull-attempt"
    kubectl("-n", NAMESPACE, "run", name, "--image=registry.k8s.io/celsius/never-published:1",
            "--image-pull-policy=Always", "--restart=Never")
    try:
        message = wait_until("the pull to fail", lambda: " ".join(
            e["message"] for e in kubectl_json("-n", NAMESPACE, "get", "events", "--field-selector",
                                               f"involvedObject.name={name}")["items"]
            if e["reason"] == "Failed"), 120)
    finally:
        kubectl("-n", NAMESPACE, "delete", "pod", name, "--wait=false")
    assert "127.0.0.1:1" in message, message
    where = message.index("127.0.0.1:1")
    print(f"pull of registry.k8s.io/celsius/never-published:1 -> ...{message[max(0, where - 120):where + 40]}...")
