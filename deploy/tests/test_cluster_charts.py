"""Both charts on the real local cluster (scripts/cluster.sh), as a user would run them: the
celsius chart installed with its defaults apart from image names, reached through its NodePort
at the node's address, autoscaled under load from the locust chart, upgraded and disrupted
under load, then uninstalled. Each check prints what it measured. The tests run in file order
and share one release (module fixture); test_cluster_down.py takes the cluster down afterwards."""

from __future__ import annotations

import re
import statistics
import threading
import time
from dataclasses import dataclass, field

import pytest

from celsius_loadtest.kube import ClusterSource, LocustJob, LocustResult, Timeline, answers_by_app_id
from clusterlib import CHARTS, KUBE, NODE_IP, helm, kubectl, kubectl_json, node_url, project_version, wait_until
from clusterlib import http as http_request

NAMESPACE = "celsius-test"
RELEASE = "celsius"
VERSION = project_version()
# The chart's defaults apart from the image names: the project's model server instead of the
# official TF Serving image, which cannot be pulled here (the documented override, alone).
IMAGE_SETS = ["tfServing.image.repository=celsius/model-server"]
SERVER_SELECTOR = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=server"
MODEL_SELECTOR = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=tf-serving"


def values_args(*sets: str) -> list[str]:
    return [arg for s in sets for arg in ("--set", s)]


def upgrade(*sets: str, reuse: bool = True, timeout: str = "5m") -> None:
    helm("upgrade", RELEASE, str(CHARTS / "celsius"), "-n", NAMESPACE, *(["--reuse-values"] if reuse else []),
         *values_args(*sets), "--wait", "--timeout", timeout)


def node_port() -> int:
    return int(kubectl("-n", NAMESPACE, "get", "service", RELEASE, "-o", "jsonpath={.spec.ports[0].nodePort}"))


def convert(path: str, values, port: int | None = None, timeout: float = 5):
    return http_request("POST", node_url(port or node_port(), path), {"fahrenheit": values}, timeout=timeout)


def expected(values: list[float]) -> list[float]:
    return [(f - 32.0) * 5.0 / 9.0 for f in values]


def server_pods() -> list[dict]:
    return kubectl_json("-n", NAMESPACE, "get", "pods", "-l", SERVER_SELECTOR)["items"]


def answers() -> dict[str, int]:
    """Answers so far of each running service pod, by app_id (its own counters, read through the
    API server's proxy)."""
    return answers_by_app_id(KUBE, NAMESPACE, SERVER_SELECTOR)


def timeline() -> Timeline:
    """Every 5 s: each Deployment's pods, the HPA's figures, CPU, each replica's answers."""
    return Timeline(ClusterSource(KUBE, NAMESPACE, SERVER_SELECTOR)).start()


def locust_run(name: str, tags: str, users: int, run_time: str, *sets: str) -> LocustJob:
    """A headless run of the locust chart (master + 2 workers, the chart's defaults for them)
    against the celsius release's Service."""
    return LocustJob(KUBE, NAMESPACE, name, tags=tags, users=users, run_time=run_time, sets=sets,
                     keep_results_s=300, expect_workers_wait_s=120)


@pytest.fixture(scope="module", autouse=True)
def release():
    kubectl("apply", "-f", "-", input=kubectl("create", "namespace", NAMESPACE, "--dry-run=client", "-o", "yaml"))
    yield
    # Whatever happened: nothing of the tests stays in the cluster.
    for name in ("locust", RELEASE):
        helm("uninstall", name, "-n", NAMESPACE, "--wait", check=False)
    kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", "--timeout=120s", check=False)


# ----------------------------------------------------------------------------------- check 1

def test_1_install_with_defaults_and_helm_test():
    started = time.monotonic()
    helm("install", RELEASE, str(CHARTS / "celsius"), "-n", NAMESPACE, *values_args(*IMAGE_SETS),
         "--wait", "--timeout", "10m")
    installed = time.monotonic() - started
    pods = kubectl("-n", NAMESPACE, "get", "pods", "-o", "wide")
    print(f"helm install --wait: {installed:.0f} s\n{pods}")
    images = {c["image"] for p in kubectl_json("-n", NAMESPACE, "get", "pods")["items"]
              for c in p["spec"]["containers"]}
    assert images == {f"celsius/server:{VERSION}", f"celsius/model-server:{VERSION}"}, images
    tested = helm("test", RELEASE, "-n", NAMESPACE, "--timeout", "3m")
    # Helm prints the test pod's log on stderr (hook-output-log-policy).
    phase = re.search(r"Phase: +\w+", tested.stdout)
    print(f"helm test: {phase.group(0) if phase else tested.stdout}; the test pod's log:\n{tested.stderr}")
    assert re.search(r"Phase: +Succeeded", tested.stdout), tested.stdout
    assert "/convert ok" in tested.stderr and "/convert/model ok" in tested.stderr, tested.stderr
    # Issue 11 defect 6: the test pod is gone after the run (its log was printed by helm).
    leftover = kubectl("-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/component=test", "-o", "name")
    assert leftover == "", leftover


# ----------------------------------------------------------------------------------- check 2

def model_available(port: int) -> bool:
    """The service reports the model available (/readyz itself does not follow the model server)."""
    try:
        status, _, body = http_request("GET", node_url(port, "/readyz"), timeout=2)
    except OSError:
        return False
    return status == 200 and bool((body or {}).get("model", {}).get("available"))


def test_2_node_port_answers_from_the_host_and_port_changes_apply_live():
    port = node_port()
    values = [212, 98.6, -40, -459.67]
    wait_until("the service to report the model available", lambda: model_available(port), 180, 1)
    for path in ("/convert", "/convert/model"):
        status, headers, body = convert(path, values, port)
        assert status == 200, body
        assert body["celsius"] == expected(values), body
        assert headers["x-app-id"] == body["app_id"] and len(body["app_id"]) == 36
        print(f"{NODE_IP}:{port}{path} -> {status} celsius={body['celsius']} X-App-Id={headers['x-app-id']}")

    upgrade("service.port=9090", "service.nodePort=30123")
    service = kubectl_json("-n", NAMESPACE, "get", "service", RELEASE)
    assert (service["spec"]["ports"][0]["port"], service["spec"]["ports"][0]["nodePort"]) == (9090, 30123)
    status, _, body = wait_until("the new node port to answer", lambda: (
        convert("/convert", [32], 30123, timeout=2)[0] == 200 and convert("/convert", [32], 30123)), 60, 1)
    assert body["celsius"] == [0]
    with pytest.raises(OSError):
        convert("/convert", [32], port, timeout=2)
    tested = helm("test", RELEASE, "-n", NAMESPACE, "--timeout", "3m")  # in-cluster clients use port 9090
    assert re.search(r"Phase: +Succeeded", tested.stdout), tested.stdout
    print(f"service.port=9090 service.nodePort=30123: {NODE_IP}:30123 answers, {port} refused, helm test passes "
          "on port 9090")

    # Issue 10 item 12: the chart takes any port; the API server judges it against its range.
    refused = helm("upgrade", RELEASE, str(CHARTS / "celsius"), "-n", NAMESPACE, "--reuse-values",
                   "--set", "service.nodePort=49000", "--timeout", "2m", check=False)
    assert refused.returncode != 0
    assert "provided port is not in the valid range" in refused.stderr, refused.stderr
    reason = re.search(r"provided port is not in the valid range[^\n]*", refused.stderr).group(0)
    print(f"service.nodePort=49000: refused by the API server: {reason}")

    upgrade("service.port=8000", "service.nodePort=null")
    assert kubectl("-n", NAMESPACE, "get", "service", RELEASE, "-o", "jsonpath={.spec.ports[0].port}") == "8000"


# ----------------------------------------------------------------------------------- check 3

@dataclass
class HpaRun:
    timeline: Timeline
    result: LocustResult
    answers: dict[str, int]


HPA_RUNS: dict[str, HpaRun] = {}
SCALE_DOWN_WINDOW_S = 30


def load_with_timeline(tags: str, users: int, run_time: str) -> HpaRun:
    before = answers()
    samples = timeline()
    run = locust_run("locust", tags, users, run_time)
    try:
        result = run.result()
        after = answers()
    finally:
        samples.stop()
        run.uninstall()
    return HpaRun(samples, result, {app: after[app] - before.get(app, 0) for app in after})


def test_3a_which_scenario_drives_the_hpa():
    """The HPA's CPU utilisation under the same Locust load (master + 2 workers, 32 users, 60 s) on
    each path: the native path costs the service a few microseconds per request, the model
    path far more (a gRPC call per request)."""
    upgrade(f"autoscaling.behavior.scaleDown.stabilizationWindowSeconds={SCALE_DOWN_WINDOW_S}")
    for tags in ("native", "model"):
        wait_until("one replica before the run", lambda: len(server_pods()) == 1, 600, 5)
        HPA_RUNS[tags] = load_with_timeline(tags, 32, "60s")
        print(HPA_RUNS[tags].timeline.show(f"{tags} load, {HPA_RUNS[tags].result.line()}", RELEASE))
        print(f"{tags}: highest utilisation {HPA_RUNS[tags].timeline.max_utilisation(RELEASE)} % of the 500m "
              f"request, most replicas {HPA_RUNS[tags].timeline.max_replicas(RELEASE)}, answers by app_id "
              f"{HPA_RUNS[tags].answers}")
    assert max(run.timeline.max_utilisation(RELEASE) for run in HPA_RUNS.values()) > 50, \
        "neither scenario took the service above the HPA's 50 % target"


def test_3b_the_hpa_scales_out_under_load_and_back_in():
    driver = max(HPA_RUNS, key=lambda tags: HPA_RUNS[tags].timeline.max_utilisation(RELEASE))
    run = HPA_RUNS[driver]
    print(f"the {driver} scenario drives the HPA here")
    assert run.timeline.max_replicas(RELEASE) >= 2, f"{driver}: replicas stayed at {run.timeline.max_replicas(RELEASE)}"
    assert sum(run.result.requests.values()) > 0  # failures are check 4/5's subject; 3a printed them
    started = time.monotonic()
    samples = timeline()
    try:
        wait_until("the HPA to scale back to 1", lambda: len(server_pods()) == 1
                   and kubectl_json("-n", NAMESPACE, "get", "hpa", RELEASE)["status"]["desiredReplicas"] == 1,
                   300 + SCALE_DOWN_WINDOW_S, 5)
    finally:
        samples.stop()
    print(samples.show("after the load", RELEASE))
    print(f"back to 1 replica {time.monotonic() - started:.0f} s after the load ended "
          f"(stabilization window {SCALE_DOWN_WINDOW_S} s)")


def test_3c_answers_come_from_every_replica():
    """New replicas take load: the service's bounded connection lifetime (--keepalive-requests,
    --keepalive-time-ms) makes Locust's keep-alive connections reconnect through the Service."""
    driver = max(HPA_RUNS, key=lambda tags: HPA_RUNS[tags].timeline.max_utilisation(RELEASE))
    if HPA_RUNS[driver].timeline.max_replicas(RELEASE) < 2:
        pytest.xfail("the HPA did not scale out in this run (checks 3a/3b): one replica, nothing to spread")
    counts = HPA_RUNS[driver].answers
    total = sum(counts.values())
    shares = {app: round(n / total, 3) for app, n in counts.items()} if total else {}
    print(f"{driver}: answers by app_id {counts}, shares {shares}")
    assert len([share for share in shares.values() if share >= 0.1]) >= 2, shares


# ----------------------------------------------------------------------------------- check 4

def test_4_upgrade_to_a_new_image_tag_under_load_loses_nothing():
    wait_until("one replica before the upgrade", lambda: len(server_pods()) == 1, 600, 5)
    before = {p["metadata"]["name"] for p in server_pods()}
    run = locust_run("locust", "native", 16, "75s")
    try:
        run.wait_running()
        time.sleep(10)
        started = time.monotonic()
        upgrade("image.tag=dev", timeout="5m")
        upgraded = time.monotonic() - started
        result = run.result()
    finally:
        run.uninstall()
    after = {p["metadata"]["name"]: p["spec"]["containers"][0]["image"] for p in server_pods()}
    print(f"helm upgrade image.tag=dev under load: {upgraded:.0f} s; pods {sorted(before)} -> {after}; "
          f"{result.line()}; errors {result.errors}")
    assert not before & after.keys() and set(after.values()) == {"celsius/server:dev"}
    assert sum(result.requests.values()) > 1000
    assert sum(result.failures.values()) == 0, result.errors


# ----------------------------------------------------------------------------------- check 5

@dataclass
class Probe:
    """Requests from the host to the NodePort every 100 ms, each on a new connection."""
    path: str
    port: int
    results: list[tuple[float, int, float]] = field(default_factory=list)  # (t, status or 0, seconds)
    _stop: threading.Event = field(default_factory=threading.Event)
    _started: float = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def start(self) -> Probe:
        started = self._started = time.monotonic()

        def loop() -> None:
            while not self._stop.is_set():
                t = time.monotonic()
                try:
                    status = convert(self.path, [50], self.port, timeout=5)[0]
                except OSError:
                    status = 0
                self.results.append((round(t - started, 1), status, time.monotonic() - t))
                self._stop.wait(0.1)

        threading.Thread(target=loop, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def summary(self) -> str:
        runs, last = [], None
        for t, status, _ in self.results:
            if status != last:
                runs.append(f"{t}s:{status}")
                last = status
        return " ".join(runs)


def test_5_model_server_pod_deleted_under_load():
    """The model server's only pod is deleted under mixed Locust load; probes from the host
    (a new connection each, every 100 ms) follow both paths until the model path has answered
    200 for 5 s again. The new pod has to start and load the SavedModel (celsius-model-server;
    about 8 s in all on this project's machine), and the service then has to resolve the
    headless Service's name again to find its new address."""
    port = node_port()
    run = locust_run("locust", "", 16, "150s")
    native, model = Probe("/convert", port), Probe("/convert/model", port)
    readyz: list[tuple[float, int]] = []
    try:
        run.wait_running()
        native.start()
        model.start()
        time.sleep(10)
        victim = kubectl("-n", NAMESPACE, "get", "pods", "-l", MODEL_SELECTOR, "-o",
                         "jsonpath={.items[0].metadata.name}")
        deleted_at = time.monotonic()
        kubectl("-n", NAMESPACE, "delete", "pod", victim, "--wait=false")
        new_pod_ready = recovered = None
        while time.monotonic() - deleted_at < 300:  # a busy machine needs minutes to start TF
            now = round(time.monotonic() - deleted_at, 1)
            try:
                readyz.append((now, http_request("GET", node_url(port, "/readyz"), timeout=2)[0]))
            except OSError:
                readyz.append((now, 0))
            successors = [p for p in kubectl_json("-n", NAMESPACE, "get", "pods", "-l", MODEL_SELECTOR)["items"]
                          if p["metadata"]["name"] != victim]
            if new_pod_ready is None and any(
                    all(c.get("ready") for c in p["status"].get("containerStatuses") or [{}]) for p in successors):
                new_pod_ready = now
            recent = [status for t, status, _ in model.results if t >= model.elapsed() - 5]
            if new_pod_ready is not None and recent and all(status == 200 for status in recent):
                recovered = now
                break
            time.sleep(0.5)
        native.stop()
        model.stop()
        result = run.result()
    finally:
        native.stop()
        model.stop()
        run.uninstall()
    model_503 = [seconds for _, status, seconds in model.results if status == 503]
    print(f"model-server pod {victim} deleted; its successor ready after {new_pod_ready} s, the model path "
          f"answering 200 for 5 s again after {recovered} s")
    print(f"  host probes /convert: {native.summary()}")
    print(f"  /convert/model: {model.summary()}; 503s: {len(model_503)}, slowest "
          f"{max(model_503, default=0) * 1000:.0f} ms")
    print(f"  /readyz after the deletion (s:status, 0 = refused): {compress(readyz)}")
    print(f"  Locust: {result.line()}; errors {result.errors}")
    assert recovered is not None, "the model path did not recover by itself"
    # 503 comes fast: most at once from the breaker (failing fast), none after the request's own
    # deadline (the chart's modelTimeoutMs, 1 s: past it the answer is 504) by more than the
    # host's path to the pod takes on a busy machine (a new connection through the NodePort per
    # probe). A call gRPC retries transparently (model server closing its connections) waits
    # for the new connection attempt, up to the deadline: one CI run saw a 503 at 1.095 s.
    assert model_503, "no 503 while the model server was gone"
    assert statistics.median(model_503) < 0.5, f"503s not fast: median {statistics.median(model_503):.3f} s"
    assert max(model_503) < 1.0 + 1.0, "a 503 came long after the request's deadline"
    assert all(status == 200 for _, status, _ in native.results), native.summary()
    assert result.failures.get("/convert", 0) == 0, result.errors


def compress(timeline: list[tuple[float, int]]) -> str:
    """'0.4s:200 1.9s:503 5.8s:0': each change of status and when it happened."""
    changes, last = [], None
    for t, status in timeline:
        if status != last:
            changes.append(f"{t}s:{status}")
            last = status
    return " ".join(changes)


# ----------------------------------------------------------------------------------- check 6

def test_6_two_model_servers_both_get_predict_traffic():
    """The service's gRPC client spreads its calls over every model-server pod (round_robin over
    the headless Service's addresses). It learns of a new pod only when it resolves the name
    again, after its connection reaches the model server's max connection age
    (tfServing.maxConnectionAgeMs, 30 s, plus up to 10 % jitter and a 5 s grace) and the
    metrics API shows a pod's CPU 15-30 s later: so the samples are taken until both pods work,
    for up to three times that (a CI run once sampled the new pod 45 s in, just as it started)."""
    upgrade("tfServing.replicaCount=2")
    run = locust_run("locust", "model", 16, "300s")
    samples: list[dict[str, float]] = []

    def both_busy() -> bool:
        samples.append(KUBE.pod_cpu(NAMESPACE, MODEL_SELECTOR))
        last = samples[-1]
        return len(last) == 2 and min(last.values()) >= 0.25 * max(last.values())

    try:
        run.wait_running()
        time.sleep(20)
        try:
            wait_until("both model-server pods to take Predict calls", both_busy, 200, 15)
        finally:
            print(f"model-server pods' CPU (m) under /convert/model load from one service pod, every 15 s "
                  f"from 20 s into the run: {samples}")
    finally:
        run.uninstall()
    last = samples[-1]
    assert len(last) == 2, last
    assert min(last.values()) >= 0.25 * max(last.values()), f"one model server idles: {last}"


# ------------------------------------------------------------- fixes shown on the cluster

def test_hard_anti_affinity_rolling_update_completes_on_one_node():
    """Issue 11 defect 3: with podAntiAffinityPreset=hard the surge pod of a rolling update
    could never be scheduled once the node held a replica; the update now replaces in place."""
    release = "hard"
    sets = [*IMAGE_SETS, "podAntiAffinityPreset=hard", "autoscaling.enabled=false", "tfServing.enabled=false"]
    try:
        helm("install", release, str(CHARTS / "celsius"), "-n", NAMESPACE, *values_args(*sets), "--wait",
             "--timeout", "3m")
        started = time.monotonic()
        helm("upgrade", release, str(CHARTS / "celsius"), "-n", NAMESPACE, "--reuse-values", "--set",
             "image.tag=dev", "--wait", "--timeout", "3m")
        images = {p["spec"]["containers"][0]["image"] for p in kubectl_json(
            "-n", NAMESPACE, "get", "pods", "-l", f"app.kubernetes.io/instance={release}")["items"]}
        print(f"hard anti-affinity: helm upgrade --wait done in {time.monotonic() - started:.0f} s, pods run {images}")
        assert images == {"celsius/server:dev"}
    finally:
        helm("uninstall", release, "-n", NAMESPACE, "--wait", check=False)


def test_locust_master_ends_at_once_when_it_gives_up_or_is_deleted():
    """Issue 11 defects 4 and 5: a master that gave up waiting for its workers kept its Job
    Running for keepResultsSeconds more; a deleted master waited out its 30 s grace period."""
    stuck = locust_run("stuck", "native", 1, "30s", "workers.resources.requests.cpu=64",
                      "workers.resources.limits.cpu=64", "run.expectWorkersMaxWaitSeconds=10")
    try:
        started = time.monotonic()
        failed = wait_until("the master's Job to fail", lambda: kubectl(
            "-n", NAMESPACE, "get", "job", "stuck-locust-master", "-o",
            "jsonpath={.status.conditions[?(@.type=='Failed')].status}") == "True", 120, 1)
        gave_up = time.monotonic() - started
        log = kubectl("-n", NAMESPACE, "logs", "job/stuck-locust-master")
    finally:
        stuck.uninstall()
    print(f"workers unschedulable: the master gave up and its Job failed {gave_up:.0f} s after the install "
          f"(wait 10 s, keepResultsSeconds 300): {log.strip().splitlines()[-1]}")
    assert failed and gave_up < 60 and "before any request" in log

    run = locust_run("running", "native", 4, "120s")
    try:
        run.wait_running()
        pod = run.master_pod()
        started = time.monotonic()
        kubectl("-n", NAMESPACE, "delete", "pod", pod, "--wait=true", "--timeout=60s")
        deleted = time.monotonic() - started
    finally:
        run.uninstall()
    print(f"a running headless master deleted in {deleted:.1f} s (grace period 30 s)")
    assert deleted < 15


# ----------------------------------------------------------------------------------- check 7

def test_7_uninstall_leaves_nothing():
    helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "3m")
    wait_until("every pod of the release to go", lambda: kubectl(
        "-n", NAMESPACE, "get", "pods", "-o", "name") == "", 120)
    kinds = "all,configmaps,secrets,serviceaccounts,pdb,hpa,endpointslices,networkpolicies,ingresses,jobs"
    left = kubectl("-n", NAMESPACE, "get", kinds, "-o", "name").split()
    # What Kubernetes itself keeps in every namespace.
    expected_left = {"configmap/kube-root-ca.crt", "serviceaccount/default"}
    print(f"after helm uninstall: {left}")
    assert set(left) == expected_left, left
