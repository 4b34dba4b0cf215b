"""Kubernetes from the load test's side: kubectl and helm against a cluster, headless runs of
the project's locust chart, and the timeline of a run.

Shared by the cluster job (`cluster.py`, `scripts/run.sh --cluster`) and the chart checks on
the local cluster (deploy/tests/test_cluster_charts.py).

The timeline (`Timeline`) samples every few seconds, from the Kubernetes API only (so it works
the same on any cluster, with kubectl's credentials):
- per workload (each Deployment and Job of the namespace, and the node): pods, ready pods, the
  HPA's desired replicas and the CPU utilisation it reports (`status.currentMetrics`,
  autoscaling/v2), and the CPU utilisation computed from the metrics API the way the HPA
  does: the pods' summed usage over their containers' summed CPU requests, over the pods that
  have metrics, leaving out pods being deleted and failed pods
  (kubernetes/pkg/controller/podautoscaler/replica_calculator.go). The HPA also leaves out
  pods that are not yet ready shortly after they start, so its figure can differ from ours
  while replicas come up; both are kept. For the node: its usage over its allocatable CPU;
- per service replica: its `app_id` and its request counters by route
  (`celsius_build_info`, `celsius_http_requests_total` on the service's /metrics; server/src/
  metrics.cpp), read through the API server's proxy to the pod
  (`/api/v1/namespaces/NS/pods/NAME:PORT/proxy/metrics`), so no traffic goes anywhere but to
  the API server.

CPU quantities are millicores (Kubernetes' resource.Quantity: `250m`, `1`, `0.5`, `1500u`,
`12345678n`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from prometheus_client.parser import text_string_to_metric_families

from celsius_loadtest.stack import REPO

CHARTS = REPO / "deploy" / "charts"
# The service's routes whose answers are counted per replica (the metrics' `route` label).
ANSWER_ROUTES = ("/convert", "/convert/model")


class CommandError(RuntimeError):
    """kubectl or helm exited non-zero; the message holds the command and its output."""


# ---------------------------------------------------------------- kubectl and helm

@dataclass
class Kube:
    """kubectl and helm with one environment (KUBECONFIG, PATH; None: this process's)."""

    env: dict[str, str] | None = None

    def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout,
                              env=self.env if self.env is not None else dict(os.environ))
        if check and done.returncode != 0:
            raise CommandError(f"{shlex.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 300) -> str:
        return self.run(["kubectl", *args], input=input, check=check, timeout=timeout).stdout

    def json(self, *args: str, timeout: float = 300) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json", timeout=timeout))

    def helm(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        return self.run(["helm", *args], check=check, timeout=timeout)

    def raw(self, path: str, timeout: float = 30) -> str:
        """GET an API path (`kubectl get --raw`)."""
        return self.kubectl("get", "--raw", path, timeout=timeout)

    def pod_get(self, namespace: str, pod: str, port: int, path: str, timeout: float = 30) -> str:
        """GET `path` from a pod's port through the API server's proxy (the pods/proxy
        subresource): the body of a 2xx answer; CommandError otherwise."""
        return self.raw(f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}", timeout=timeout)

    def pod_cpu(self, namespace: str, selector: str) -> dict[str, float]:
        """CPU per pod (millicores) of the pods matching a label selector, from the metrics API."""
        items = json.loads(self.raw(f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods"
                                    f"?labelSelector={selector}"))["items"]
        return {p["metadata"]["name"]: sum(cpu_millicores(c["usage"]["cpu"]) for c in p["containers"])
                for p in items}


def wait_until(what: str, probe: Callable[[], Any], timeout: float, interval: float = 2.0) -> Any:
    """Calls `probe` until it returns something truthy and returns that; after `timeout`
    seconds fails (TimeoutError) with the last value or error."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
            if last:
                return last
        except (CommandError, AssertionError, OSError, ValueError, KeyError, subprocess.TimeoutExpired) as error:
            last = error
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")
        time.sleep(interval)


# ---------------------------------------------------------------- quantities and counters

def cpu_millicores(quantity: str | int | float) -> float:
    """A CPU quantity (resource.Quantity: `250m`, `1`, `0.5`, `1500u`, `12345678n`) in millicores."""
    text = str(quantity).strip()
    for suffix, scale in (("n", 1e-6), ("u", 1e-3), ("m", 1.0)):
        if text.endswith(suffix):
            return float(text[:-1]) * scale
    return float(text) * 1000


@dataclass(frozen=True)
class ReplicaCounters:
    """One service replica's identity and answers so far: requests answered per route (every
    status and method), from its /metrics."""

    app_id: str
    version: str
    answers: dict[str, int]


def parse_service_metrics(text: str) -> ReplicaCounters | None:
    """The service's Prometheus text (exposition format 0.0.4) -> its app_id and the answers per
    route in ANSWER_ROUTES (summed over method and status); None without `celsius_build_info`."""
    app_id = version = None
    answers = {route: 0 for route in ANSWER_ROUTES}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "celsius_build_info":
                    app_id, version = sample.labels.get("app_id"), sample.labels.get("version", "")
                elif sample.name == "celsius_http_requests_total" and sample.labels.get("route") in answers:
                    answers[sample.labels["route"]] += int(sample.value)
    except ValueError:  # not Prometheus text (an error page from whatever answered)
        return None
    return ReplicaCounters(app_id, version or "", answers) if app_id else None


# ---------------------------------------------------------------- the timeline

@dataclass
class WorkloadSample:
    """One workload at one moment (a row of timeline.csv)."""

    phase: str  # what ran: a scenario's name, or setup / after
    t_s: float  # seconds since the timeline started
    time: float  # Unix time (s), to line up with Locust's history
    kind: str  # Deployment, Job or Node
    name: str
    pods: int  # pods that exist and are neither being deleted nor failed
    ready: int
    hpa_desired: int | None  # the HPA's status.desiredReplicas, when an HPA targets the workload
    hpa_utilisation_pct: int | None  # the HPA's current average CPU utilisation (status.currentMetrics)
    hpa_target_pct: int | None  # its CPU target (spec.metrics)
    cpu_m: float | None  # usage of the pods with metrics (millicores)
    cpu_request_m: float | None  # their CPU requests; for the node its allocatable CPU

    @property
    def utilisation_pct(self) -> float | None:
        if self.cpu_m is None or not self.cpu_request_m:
            return None
        return 100.0 * self.cpu_m / self.cpu_request_m


@dataclass
class AnswerSample:
    """One service replica's counter for one route at one moment (a row of answers.csv)."""

    phase: str
    t_s: float
    time: float
    pod: str
    app_id: str
    route: str
    answers: int  # cumulative since the replica started


@dataclass
class Snapshot:
    """What one sample reads from the API, as the API returns it (the `items` of each list)."""

    workloads: list[dict]  # Deployments and Jobs
    hpas: list[dict]
    pods: list[dict]
    pod_metrics: list[dict] | None  # metrics.k8s.io PodMetrics; None when the metrics API did not answer
    nodes: list[dict] = field(default_factory=list)
    node_metrics: list[dict] | None = None
    service_metrics: dict[str, str] = field(default_factory=dict)  # pod name -> its /metrics text
    # pod name -> Unix time its /metrics was read (the middle of the request): a sample's reads
    # take a while, and answers per second need the counters' own times
    service_metrics_at: dict[str, float] = field(default_factory=dict)


def _live(pod: dict) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and pod.get("status", {}).get("phase") not in (
        "Failed", "Succeeded")


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in pod.get("status", {}).get("conditions") or [])


def _selects(selector: dict, labels: dict) -> bool:
    """A LabelSelector (matchLabels and matchExpressions In/NotIn/Exists/DoesNotExist) against labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


def _requests_m(pod: dict) -> float:
    return sum(cpu_millicores(c.get("resources", {}).get("requests", {}).get("cpu", 0))
               for c in pod["spec"]["containers"])


def _hpa_figures(hpa: dict) -> tuple[int | None, int | None, int | None]:
    """(desired replicas, current CPU utilisation %, target %) of an autoscaling/v2 HPA."""
    current = next((m["resource"]["current"].get("averageUtilization") for m in hpa.get("status", {}).get(
        "currentMetrics") or [] if m.get("type") == "Resource" and m["resource"]["name"] == "cpu"), None)
    target = next((m["resource"]["target"].get("averageUtilization") for m in hpa["spec"].get("metrics") or []
                   if m.get("type") == "Resource" and m["resource"]["name"] == "cpu"), None)
    return hpa.get("status", {}).get("desiredReplicas"), current, target


def workload_samples(snapshot: Snapshot, phase: str, t_s: float, now: float) -> list[WorkloadSample]:
    """Per Deployment and Job (pods by its selector) and per node: the sample at one moment."""
    usage = None if snapshot.pod_metrics is None else {
        m["metadata"]["name"]: sum(cpu_millicores(c["usage"]["cpu"]) for c in m["containers"])
        for m in snapshot.pod_metrics}
    hpas = {(h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"]): h for h in snapshot.hpas}
    rows = []
    for w in sorted(snapshot.workloads, key=lambda w: (w["kind"], w["metadata"]["name"])):
        pods = [p for p in snapshot.pods if _live(p) and _selects(w["spec"].get("selector") or {},
                                                                  p["metadata"].get("labels") or {})]
        measured = [p for p in pods if usage is not None and p["metadata"]["name"] in usage]
        hpa = hpas.get((w["kind"], w["metadata"]["name"]))
        desired, current, target = _hpa_figures(hpa) if hpa else (None, None, None)
        rows.append(WorkloadSample(
            phase, round(t_s, 1), round(now, 3), w["kind"], w["metadata"]["name"], len(pods),
            sum(1 for p in pods if _ready(p)), desired, current, target,
            round(sum(usage[p["metadata"]["name"]] for p in measured), 1) if measured else None,
            round(sum(_requests_m(p) for p in measured), 1) if measured else None))
    node_usage = None if snapshot.node_metrics is None else {
        m["metadata"]["name"]: cpu_millicores(m["usage"]["cpu"]) for m in snapshot.node_metrics}
    for n in snapshot.nodes:
        name = n["metadata"]["name"]
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
        rows.append(WorkloadSample(
            phase, round(t_s, 1), round(now, 3), "Node", name, 1, int(ready), None, None, None,
            round(node_usage[name], 1) if node_usage and name in node_usage else None,
            cpu_millicores(n["status"]["allocatable"]["cpu"])))
    return rows


def answer_samples(snapshot: Snapshot, phase: str, t_s: float, now: float) -> list[AnswerSample]:
    """Per service replica whose /metrics was read: its cumulative answers per route."""
    rows = []
    for pod, text in sorted(snapshot.service_metrics.items()):
        counters = parse_service_metrics(text)
        if counters is None:
            continue
        at = snapshot.service_metrics_at.get(pod, now)
        rows += [AnswerSample(phase, round(t_s + at - now, 1), round(at, 3), pod, counters.app_id, route, n)
                 for route, n in counters.answers.items()]
    return rows


@dataclass
class ClusterSource:
    """Reads a Snapshot of one namespace from the API: its Deployments, Jobs, HPAs and pods, the
    metrics API's pod and node figures, and /metrics of the running pods that match
    `service_selector` (port `service_port`) through the API server's proxy."""

    kube: Kube
    namespace: str
    service_selector: str
    service_port: int = 8000

    def __call__(self) -> Snapshot:
        ns = self.namespace
        listed = self.kube.json("-n", ns, "get", "deployments,jobs,hpa,pods,nodes", timeout=60)["items"]
        try:
            pod_metrics = json.loads(self.kube.raw(f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods"))["items"]
            node_metrics = json.loads(self.kube.raw("/apis/metrics.k8s.io/v1beta1/nodes"))["items"]
        except (CommandError, ValueError, subprocess.TimeoutExpired):
            pod_metrics = node_metrics = None
        pods = [i for i in listed if i["kind"] == "Pod"]
        service_metrics, service_metrics_at = {}, {}
        selector = dict(part.split("=", 1) for part in self.service_selector.split(","))
        for pod in pods:
            name = pod["metadata"]["name"]
            if _live(pod) and pod.get("status", {}).get("podIP") and _selects({"matchLabels": selector},
                                                                              pod["metadata"].get("labels") or {}):
                before = time.time()
                try:
                    service_metrics[name] = self.kube.pod_get(ns, name, self.service_port, "/metrics", timeout=10)
                except (CommandError, subprocess.TimeoutExpired):
                    continue  # not serving yet, or gone: its last counters are in earlier samples
                service_metrics_at[name] = (before + time.time()) / 2
        return Snapshot([i for i in listed if i["kind"] in ("Deployment", "Job")],
                        [i for i in listed if i["kind"] == "HorizontalPodAutoscaler"], pods, pod_metrics,
                        [i for i in listed if i["kind"] == "Node"], node_metrics, service_metrics, service_metrics_at)


class Timeline:
    """Samples a source every `interval` seconds on a thread (and on `sample()`), labelling
    each row with the current phase; a sample that fails is counted in `errors` and skipped."""

    def __init__(self, source: Callable[[], Snapshot], interval: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.source, self.interval, self.clock = source, interval, clock
        self.phase = "setup"
        self.workloads: list[WorkloadSample] = []
        self.answers: list[AnswerSample] = []
        self.errors: list[str] = []
        self.started = clock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """One sample now (also between the thread's samples: at the start and end of a scenario)."""
        with self._lock:
            try:
                snapshot = self.source()
            except (CommandError, KeyError, ValueError, subprocess.TimeoutExpired) as error:
                self.errors.append(f"{self.phase}: {str(error)[:300]}")
                return
            now = self.clock()
            t = now - self.started
            self.workloads += workload_samples(snapshot, self.phase, t, now)
            self.answers += answer_samples(snapshot, self.phase, t, now)

    def set_phase(self, phase: str) -> None:
        with self._lock:
            self.phase = phase

    def start(self) -> Timeline:
        def loop() -> None:
            while not self._stop.is_set():
                self.sample()
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, name="timeline", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Timeline:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=120)
        return self

    # ---- what the chart checks print and assert
    def of(self, name: str, kind: str = "Deployment") -> list[WorkloadSample]:
        return [s for s in self.workloads if s.kind == kind and s.name == name]

    def max_utilisation(self, deployment: str) -> int:
        """The highest CPU utilisation the HPA of `deployment` reported (0 if none)."""
        return max((s.hpa_utilisation_pct for s in self.of(deployment) if s.hpa_utilisation_pct is not None),
                   default=0)

    def max_replicas(self, deployment: str) -> int:
        return max((s.pods for s in self.of(deployment)), default=0)

    def show(self, title: str, deployment: str) -> str:
        lines = [f"{title}: t(s) pods ready hpa-utilisation(%) cpu(m) of {deployment}"]
        lines += [f"  {s.t_s:6.0f} {s.pods:2d} {s.ready:2d} "
                  f"{s.hpa_utilisation_pct if s.hpa_utilisation_pct is not None else '-':>4} "
                  f"{s.cpu_m if s.cpu_m is not None else float('nan'):7.0f}" for s in self.of(deployment)]
        return "\n".join(lines)

    def write(self, folder: Path) -> tuple[Path, Path]:
        """timeline.csv (one row per workload per sample) and answers.csv (one row per service
        replica, route and sample) in `folder`."""
        return (write_rows(folder / "timeline.csv", WorkloadSample, self.workloads),
                write_rows(folder / "answers.csv", AnswerSample, self.answers))


def write_rows(path: Path, kind: type, rows: list) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, [f.name for f in fields(kind)])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in asdict(row).items()})
    return path


def answers_by_app_id(kube: Kube, namespace: str, selector: str, port: int = 8000) -> dict[str, int]:
    """Answers so far (every route in ANSWER_ROUTES) of each running replica matching
    `selector`, keyed by its app_id."""
    snapshot = ClusterSource(kube, namespace, selector, port)()
    totals: dict[str, int] = {}
    for row in answer_samples(snapshot, "", 0, 0):
        totals[row.app_id] = totals.get(row.app_id, 0) + row.answers
    return totals


# ---------------------------------------------------------------- the locust chart, headless

@dataclass
class LocustResult:
    """Totals per endpoint from the master's run_stats.csv, failures from run_failures.csv."""

    requests: dict[str, int]
    failures: dict[str, int]
    rps: dict[str, float]
    errors: list[str]
    log: str

    def line(self) -> str:
        return ", ".join(f"{name}: {self.requests[name]} requests, {self.failures[name]} failed, "
                         f"{self.rps[name]:.0f} req/s" for name in sorted(self.requests))


# The files a headless master writes to /results (--csv=/results/run --csv-full-history
# --html=/results/run.html): suffix after "run".
LOCUST_FILES = ("_stats.csv", "_stats_history.csv", "_failures.csv", "_exceptions.csv", ".html")


class LocustJob:
    """A headless run of the project's locust chart (`mode=headless`: master + workers as Jobs)
    against the celsius release's Service in the same namespace. The master waits for every
    worker, runs, writes its files to /results and keeps them `keep_results_s` seconds."""

    def __init__(self, kube: Kube, namespace: str, release: str, *, tags: str, users: int, run_time: str,
                 spawn_rate: float | None = None, workers: int = 2, sets: tuple[str, ...] = (),
                 keep_results_s: int = 300, expect_workers_wait_s: int = 120) -> None:
        self.kube, self.namespace, self.release = kube, namespace, release
        self.values = ["mode=headless", f"run.tags={tags}", f"run.users={users}",
                       f"run.spawnRate={spawn_rate if spawn_rate is not None else users:g}", f"run.runTime={run_time}",
                       f"workers.replicas={workers}", f"run.keepResultsSeconds={keep_results_s}",
                       "run.failOnErrors=false", f"run.expectWorkersMaxWaitSeconds={expect_workers_wait_s}", *sets]
        kube.helm("install", release, str(CHARTS / "locust"), "-n", namespace,
                  *[arg for s in self.values for arg in ("--set", s)])
        # This install's own master Job, by its UID: a pod of an earlier release with the same name
        # (a finished master still being garbage-collected) has the same labels but another Job.
        master_job = kube.json("-n", namespace, "get", "jobs", "-l",
                               f"app.kubernetes.io/instance={release},app.kubernetes.io/component=master")["items"]
        if len(master_job) != 1:
            raise CommandError(f"{release}: expected one master Job, found {len(master_job)}")
        # The label the Job controller puts on the pods it creates (Kubernetes >= 1.27).
        self.master_selector = f"batch.kubernetes.io/controller-uid={master_job[0]['metadata']['uid']}"

    def master_pod(self) -> str:
        """The master's pod ("" until the Job controller has created it)."""
        return self.kube.kubectl("-n", self.namespace, "get", "pods", "-l", self.master_selector, "-o",
                                 "jsonpath={.items[0].metadata.name}", check=False)

    def log(self) -> str:
        return self.kube.kubectl("-n", self.namespace, "logs", self.master_pod(), check=False)

    def wait_running(self, timeout: float = 180) -> None:
        """Until the master has all workers and the users are spawning."""
        wait_until("Locust to start its users", lambda: any(
            text in self.log() for text in ("All users spawned", "Ramping to")), timeout)

    def wait_finished(self, timeout: float = 600) -> str:
        """Until the run is over (the master's shell prints `locust exited with`); its pod."""
        return wait_until("the Locust run to end", lambda: "locust exited with" in self.log() and self.master_pod(),
                          timeout, interval=3)

    def read(self, pod: str, suffix: str) -> str:
        """One of the master's result files (`run<suffix>` in /results)."""
        return self.kube.kubectl("-n", self.namespace, "exec", pod, "--", "cat", f"/results/run{suffix}")

    def copy_results(self, pod: str, folder: Path, prefix: str) -> list[Path]:
        """The master's files as `<prefix><suffix>` in `folder`, and its log as `<prefix>.log`."""
        written = []
        for suffix in LOCUST_FILES:
            path = folder / f"{prefix}{suffix}"
            path.write_text(self.read(pod, suffix))
            written.append(path)
        log_path = folder / f"{prefix}.log"
        log_path.write_text(self.kube.kubectl("-n", self.namespace, "logs", pod))
        return [*written, log_path]

    def result(self, timeout: float = 600) -> LocustResult:
        """The run's totals once it is over; CommandError with the master's log when Locust made no
        request (its pod then ends at once, without files to read)."""
        pod = self.wait_finished(timeout)
        text = self.log()
        if "before any request" in text:
            raise CommandError(f"{self.release}: Locust made no request; the master's log:\n{text[-3000:]}")
        requests, failures, rps = {}, {}, {}
        for row in csv.DictReader(io.StringIO(self.read(pod, "_stats.csv"))):
            if row["Name"] != "Aggregated":
                requests[row["Name"]] = int(row["Request Count"])
                failures[row["Name"]] = int(row["Failure Count"])
                rps[row["Name"]] = float(row["Requests/s"])
        errors = [f'{row["Occurrences"]}x {row["Method"]} {row["Name"]}: {row["Error"]}'
                  for row in csv.DictReader(io.StringIO(self.read(pod, "_failures.csv")))]
        return LocustResult(requests, failures, rps, errors, self.kube.kubectl("-n", self.namespace, "logs", pod))

    def uninstall(self) -> None:
        """The release, its Jobs and their pods: foreground deletion, so when this returns no pod
        of the release is left (a next release of the same name cannot see them)."""
        self.kube.helm("uninstall", self.release, "-n", self.namespace, "--cascade", "foreground", "--wait",
                       "--timeout", "2m", check=False)
