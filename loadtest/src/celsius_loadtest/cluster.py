"""The main job on a Kubernetes cluster: the Helm charts installed, the Locust scenarios run by
the distributed locust chart, the autoscaling recorded, the report written.

1. Installs the celsius chart (release `celsius`, its defaults apart from the `--celsius-set`
   values: on the local cluster, the image of the project's model server) and waits for it.
2. Waits (at most `--metrics-wait` seconds) until the metrics API has a CPU figure for every pod
   and the HPA a current utilisation, so the timeline has CPU from the first scenario on.
   Then starts the timeline (`kube.Timeline`): every `--sample-seconds`, each Deployment's and Job's
   pods, ready pods, the HPA's desired replicas and CPU utilisation, the CPU utilisation
   computed from the metrics API, the node's CPU, and each service replica's answers per route
   from its own counters (read through the API server's proxy).
3. Runs the scenarios native (`--tags native`), model (`--tags model`) and mixed (both), one
   after the other with identical users, spawn rate and duration, each as a headless release
   of the locust chart (master + `--workers` workers, Jobs) against the release's Service:
   traffic stays inside the cluster. After each, copies Locust's files out of the master pod
   (`<scenario>_stats.csv`, `_stats_history.csv`, `_failures.csv`, `_exceptions.csv`, `.html`,
   its log) and uninstalls the release.
4. Writes the run folder (`--results`/`--run-id`): those files, timeline.csv, answers.csv,
   run.json (the command, the cluster's versions, the charts' values set, the HPAs), report.md
   and its charts, and pods/<pod>.log per pod of the celsius release (its events and failed
   requests; `save_pod_logs`).

Every release it installs is uninstalled on every exit path (an error, Ctrl-C, SIGTERM), and
the namespace is deleted if the job created it. Nothing else in the cluster is changed
(`scripts/run.sh --cluster` brings the local cluster up first and leaves it up unless `--down`).
Talks to the cluster only through kubectl and helm (KUBECONFIG), so it runs against any
cluster that has the images and a metrics API; `scripts/run.sh --cluster` prepares the local
one (scripts/cluster.sh) first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from celsius_loadtest.kube import (
    CHARTS,
    ClusterSource,
    CommandError,
    Kube,
    LocustJob,
    Timeline,
    wait_until,
)
from celsius_loadtest.runner import (
    SCENARIOS,
    _names,
    add_locust_arguments,
    finite,
    machine,
    out_of_range,
    results_problem,
    run_folder_problem,
)
from celsius_loadtest.stack import REPO, log, repo_relative, scrub_paths

RELEASE = "celsius"  # the locust chart's targetHost default is http://celsius:8000
SERVER_SELECTOR = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=server"
# `scripts/run.sh --cluster` takes --down itself; its parser (CELSIUS_PROG set) lists it.
RUN_SH_DOWN_HELP = ("scripts/run.sh --cluster only: take the cluster down at the end, whatever happened (without it "
                    "the cluster is left up for the next run)")
# A Kubernetes namespace name: an RFC 1123 DNS label (Kubernetes' validation.IsDNS1123Label).
NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# A Go duration (time.ParseDuration), helm's --timeout: 90s, 10m, 1h30m, 1.5h.
GO_DURATION = re.compile(r"(\d+(\.\d*)?(ns|us|µs|ms|s|m|h))+|0")

# The images this project's clusters hold: the official tensorflow/serving cannot be pulled
# on the local cluster, so its model server is the project's (celsius/model-server).
LOCAL_IMAGE_SETS = ("tfServing.image.repository=celsius/model-server",)


def locust_release(scenario: str) -> str:
    return f"locust-{scenario}"


def cluster_versions(kube: Kube) -> dict:
    """The cluster as run.json records it: kubectl's and the API server's versions, Helm's, each
    node (kubelet, container runtime, OS, kernel, CPU and memory), metrics-server's image."""
    version = json.loads(kube.kubectl("version", "-o", "json", timeout=60))
    nodes = [{"name": n["metadata"]["name"], "kubelet": n["status"]["nodeInfo"]["kubeletVersion"],
              "container_runtime": n["status"]["nodeInfo"]["containerRuntimeVersion"],
              "os": n["status"]["nodeInfo"]["osImage"], "kernel": n["status"]["nodeInfo"]["kernelVersion"],
              "cpu": n["status"]["capacity"]["cpu"], "allocatable_cpu": n["status"]["allocatable"]["cpu"],
              "memory": n["status"]["capacity"]["memory"]}
             for n in kube.json("get", "nodes", timeout=60)["items"]]
    metrics_server = kube.kubectl("-n", "kube-system", "get", "deployment", "metrics-server", "-o",
                                  "jsonpath={.spec.template.spec.containers[0].image}", check=False).strip()
    return {"kubernetes_server": version.get("serverVersion", {}).get("gitVersion"),
            "kubectl": version.get("clientVersion", {}).get("gitVersion"),
            "helm": kube.helm("version", "--short").stdout.strip(), "nodes": nodes,
            "metrics_server": metrics_server or None}


def hpas(kube: Kube, namespace: str) -> list[dict]:
    """Each HPA of the namespace: its target, bounds, CPU target and behavior."""
    found = []
    for h in kube.json("-n", namespace, "get", "hpa")["items"]:
        cpu = next((m["resource"]["target"].get("averageUtilization") for m in h["spec"].get("metrics", [])
                    if m.get("type") == "Resource" and m["resource"]["name"] == "cpu"), None)
        found.append({"name": h["metadata"]["name"], "target": f'{h["spec"]["scaleTargetRef"]["kind"]}/'
                      f'{h["spec"]["scaleTargetRef"]["name"]}', "min_replicas": h["spec"].get("minReplicas", 1),
                      "max_replicas": h["spec"]["maxReplicas"], "cpu_target_pct": cpu,
                      "behavior": h["spec"].get("behavior")})
    return found


def release_charts(kube: Kube, namespace: str) -> list[dict]:
    return [{"release": r["name"], "chart": r["chart"], "app_version": r["app_version"]}
            for r in json.loads(kube.helm("list", "-n", namespace, "-o", "json").stdout)]


def service_info(kube: Kube, namespace: str) -> dict:
    """GET / of one service replica (version, app_id), through the API server's proxy."""
    pod = kube.kubectl("-n", namespace, "get", "pods", "-l", SERVER_SELECTOR, "--field-selector=status.phase=Running",
                       "-o", "jsonpath={.items[0].metadata.name}")
    return json.loads(kube.pod_get(namespace, pod, 8000, "/"))


def images(kube: Kube, namespace: str) -> set[str]:
    """The images of the pods running in the namespace now."""
    return {c["image"] for p in kube.json("-n", namespace, "get", "pods")["items"] for c in p["spec"]["containers"]}


def wait_settled(kube: Kube, namespace: str, timeout: float) -> float:
    """Until every HPA of the namespace wants its minimum and the Deployment has that many pods;
    the seconds waited."""
    started = time.monotonic()

    def settled() -> bool:
        for h in kube.json("-n", namespace, "get", "hpa")["items"]:
            target = h["spec"]["scaleTargetRef"]
            pods = kube.json("-n", namespace, "get", target["kind"].lower(), target["name"])["status"].get(
                "replicas", 0)
            if h["status"].get("desiredReplicas") != h["spec"].get("minReplicas", 1) or pods != h["spec"].get(
                    "minReplicas", 1):
                return False
        return True

    wait_until("every HPA back at its minimum", settled, timeout, interval=5)
    return time.monotonic() - started


def metrics_ready(kube: Kube, namespace: str) -> bool:
    """The metrics API has a figure for every running pod of the namespace, and every HPA of the
    namespace has computed its current CPU utilisation (status.currentMetrics). A new pod has
    neither for its first 15-60 s: metrics-server scrapes the kubelet every 15 s (its
    --metric-resolution) and needs two scrapes for a rate; the HPA controller syncs every 15 s."""
    pods = {p["metadata"]["name"] for p in kube.json("-n", namespace, "get", "pods")["items"]
            if p.get("status", {}).get("phase") == "Running"}
    measured = {m["metadata"]["name"] for m in json.loads(
        kube.raw(f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods"))["items"]}
    if not pods or not pods <= measured:
        return False
    for hpa in kube.json("-n", namespace, "get", "hpa")["items"]:
        current = [m for m in hpa.get("status", {}).get("currentMetrics") or []
                   if m.get("type") == "Resource" and m["resource"]["name"] == "cpu"]
        if not current or current[0]["resource"]["current"].get("averageUtilization") is None:
            return False
    return True


def wait_metrics(kube: Kube, namespace: str, timeout: float) -> float | None:
    """Until metrics_ready(); the seconds waited, or None when `timeout` passed first (the run goes
    on: its timeline then starts without CPU figures)."""
    started = time.monotonic()
    try:
        wait_until("the metrics API and the HPA to report every pod", lambda: metrics_ready(kube, namespace),
                   timeout, interval=3)
    except TimeoutError as error:
        log(f"warning: {error}; the timeline starts without CPU figures")
        return None
    return time.monotonic() - started


def progress_line(timeline: Timeline) -> str:
    """The latest sample of each Deployment: pods (ready) and the HPA's utilisation."""
    latest: dict[str, object] = {}
    for s in timeline.workloads:
        if s.kind == "Deployment":
            latest[s.name] = s
    parts = []
    for name, s in latest.items():
        hpa = f", HPA {s.hpa_utilisation_pct} %" if s.hpa_utilisation_pct is not None else ""
        parts.append(f"{name} {s.pods} pods ({s.ready} ready{hpa})")
    return "; ".join(parts)


def run_scenario(kube: Kube, args: argparse.Namespace, scenario: str, timeline: Timeline, out: Path) -> dict:
    """One scenario as a headless locust release; its files copied to `out`; figures for run.json."""
    tags = SCENARIOS[scenario] or ""
    seconds = args.duration
    log(f"Locust scenario '{scenario}' on the cluster: master + {args.workers} workers, {args.users} users, "
        f"spawn rate {args.spawn_rate:g}/s, {seconds} s")
    timeline.set_phase(scenario)
    timeline.sample()
    started = time.time()
    job = LocustJob(kube, args.namespace, locust_release(scenario), tags=tags, users=args.users,
                    spawn_rate=args.spawn_rate, run_time=f"{seconds}s", workers=args.workers,
                    sets=tuple(args.locust_set), expect_workers_wait_s=args.workers_wait)
    deadline = time.monotonic() + seconds + args.workers_wait + 300
    last_print = time.monotonic()
    while True:
        text = job.log()
        if "locust exited with" in text:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"Locust scenario {scenario} did not end in time; the master's log:\n{text[-3000:]}")
        if time.monotonic() - last_print >= 10:
            last_print = time.monotonic()
            print(f"    {scenario}: {time.time() - started:.0f} s; {progress_line(timeline)}", flush=True)
        time.sleep(3)
    ended = time.time()
    timeline.sample()  # every replica's counters right after the run
    if "before any request" in text:
        raise RuntimeError(f"Locust scenario {scenario} made no request:\n{text[-3000:]}")
    pod = job.master_pod()
    job.copy_results(pod, out, scenario)
    used = images(kube, args.namespace)  # Locust's too, before its release goes
    job.uninstall()
    summary = (out / f"{scenario}_stats.csv").read_text()
    aggregated = [line.split(",") for line in summary.splitlines() if ",Aggregated," in line]
    if aggregated:
        print(f"    {scenario}: {aggregated[0][2]} requests, {aggregated[0][3]} failures; {progress_line(timeline)}",
              flush=True)
    return {"release": locust_release(scenario), "values": job.values, "started": round(started, 3),
            "ended": round(ended, 3), "wall_s": round(ended - started, 1), "images": sorted(used)}


def ours(release: str) -> bool:
    """A release this job installs: the celsius release or a scenario's Locust release."""
    return release == RELEASE or release.startswith("locust-")


def quiet_log(text: str) -> str:
    """A pod's log without the service's access-log lines of answered requests (`"msg":"request"`
    with a status below 400; server/src/logging.cpp), each line read from its first `{` (kubectl's
    `--timestamps` prefix before it): what is left are its events and every request that failed,
    small enough to keep with a run."""
    kept = []
    for line in text.splitlines():
        if '"msg":"request"' in line:
            try:
                if int(json.loads(line[line.index("{"):]).get("status", 0)) < 400:
                    continue
            except (ValueError, TypeError, AttributeError):
                pass  # not one of the service's JSON lines: kept as it is
        kept.append(line)
    return "\n".join(kept) + ("\n" if kept else "")


def save_pod_logs(kube: Kube, namespace: str, folder: Path) -> list[Path]:
    """Before the release goes: each pod of the celsius release (service and model server) gets
    `pods/<pod>.log` in `folder`: its containers' logs (`kubectl logs --all-containers
    --timestamps`, and the previous container's too when it restarted) through `quiet_log` and
    `scrub_paths`. Best effort: a pod that is gone or a log that cannot be read is noted in the
    file, never an error of the run."""
    try:
        pods = kube.json("-n", namespace, "get", "pods", "-l", f"app.kubernetes.io/instance={RELEASE}",
                         timeout=60)["items"]
    except (CommandError, subprocess.TimeoutExpired, ValueError) as e:
        log(f"pod logs not saved: {str(e)[:200]}")
        return []
    written = []
    for pod in pods:
        name = pod["metadata"]["name"]
        restarted = any(c.get("restartCount", 0) for c in pod.get("status", {}).get("containerStatuses", []))
        parts = []
        for previous in ((True, False) if restarted else (False,)):
            argv = ["-n", namespace, "logs", name, "--all-containers", "--timestamps", "--tail=-1"]
            try:
                text = kube.run(["kubectl", *argv, *(["--previous"] if previous else [])], check=False, timeout=60)
            except subprocess.TimeoutExpired:
                parts.append("# kubectl logs timed out\n")
                continue
            heading = "# the previous container (it restarted)\n" if previous else ""
            parts.append(heading + (quiet_log(text.stdout) if text.returncode == 0 else f"# {text.stderr.strip()}\n"))
        path = folder / "pods" / f"{name}.log"
        path.parent.mkdir(exist_ok=True)
        path.write_text(scrub_paths("".join(parts)))
        written.append(path)
    return written


def uninstall_everything(kube: Kube, namespace: str, created_namespace: bool) -> None:
    """Every release of this job in the namespace (Locust's first; in any state, so also one whose
    install was interrupted), then the namespace if this job created it."""
    listed = kube.helm("list", "-n", namespace, "-a", "-q", check=False).stdout.split()
    for release in sorted((r for r in listed if ours(r)), key=lambda r: r == RELEASE):
        log(f"uninstalling {release}")
        kube.helm("uninstall", release, "-n", namespace, "--wait", "--timeout", "3m", check=False)
    if created_namespace:
        log(f"deleting namespace {namespace}")
        kube.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=true", "--timeout=180s",
                     check=False, timeout=240)


def run(args: argparse.Namespace) -> Path:
    kube = Kube()
    started = time.monotonic()
    run_id = args.run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = Path(args.results) / run_id
    cluster = cluster_versions(kube)  # fails early when the cluster cannot be reached
    log(f"cluster: Kubernetes {cluster['kubernetes_server']}, {len(cluster['nodes'])} node(s); namespace "
        f"{args.namespace}")
    out.mkdir(parents=True, exist_ok=False)  # never into an earlier run (run_folder_problem)
    ns = args.namespace
    created_namespace = kube.kubectl("get", "namespace", ns, "--ignore-not-found", "-o", "name").strip() == ""
    if created_namespace:
        kube.kubectl("create", "namespace", ns)
    timeline: Timeline | None = None
    try:
        # What an earlier run that was killed (SIGKILL) left: this job's own releases only.
        for leftover in kube.helm("list", "-n", ns, "-a", "-q").stdout.split():
            if ours(leftover):
                log(f"removing {leftover}, left in {ns} by an earlier run")
                kube.helm("uninstall", leftover, "-n", ns, "--wait", "--timeout", "3m", check=False)
        celsius_sets = [*args.celsius_set]
        log(f"helm install {RELEASE} deploy/charts/celsius --wait" + "".join(f" --set {s}" for s in celsius_sets))
        install_started = time.monotonic()
        kube.helm("install", RELEASE, str(CHARTS / "celsius"), "-n", ns, *[a for s in celsius_sets for a in ("--set", s)],
                  "--wait", "--timeout", args.install_timeout)
        installed_s = time.monotonic() - install_started
        info = service_info(kube, ns)
        log(f"installed in {installed_s:.0f} s: service {info.get('version')}, app_id {info.get('app_id')}")
        metrics_s = wait_metrics(kube, ns, args.metrics_wait) if args.metrics_wait > 0 else None
        if metrics_s is not None:
            log(f"the metrics API and the HPA report every pod after {metrics_s:.0f} s")
        timeline = Timeline(ClusterSource(kube, ns, SERVER_SELECTOR), args.sample_seconds).start()
        windows = {}
        settled = {}
        for scenario in args.scenarios:
            if args.settle:
                timeline.set_phase("settle")
                settled[scenario] = round(wait_settled(kube, ns, args.settle), 1)
            windows[scenario] = run_scenario(kube, args, scenario, timeline, out)
        timeline.set_phase("after")
        timeline.sample()
        meta = {
            "run_id": run_id,
            "command": args.command_line,
            "scenarios": args.scenarios,
            "users": args.users, "spawn_rate": args.spawn_rate, "duration_s": args.duration,
            "locust_settings": "deploy/charts/locust (mode=headless, values as in loadtest/locust.conf)",
            "cluster": {
                **cluster, "namespace": ns,
                "celsius_sets": celsius_sets, "locust_sets": args.locust_set,
                "locust_workers": args.workers,
                "charts": release_charts(kube, ns),
                "hpas": hpas(kube, ns),
                "images": sorted({i for w in windows.values() for i in w["images"]}),
                "install_s": round(installed_s, 1),
                "metrics_wait_s": round(metrics_s, 1) if metrics_s is not None else None,
                "sample_seconds": args.sample_seconds,
                "settle_s": settled or None,
                "scenario_windows": windows,
                "timeline_errors": timeline.errors[:20],
                # kubectl, helm and this process: on the local cluster the same CPUs as the load.
                "job_cpu_s": round(sum(os.times()[:4]), 1),
            },
            "service": {"app_id": info.get("app_id"), "version": info.get("version"),
                        "model_path": "gRPC to the model server's headless Service (the chart's wiring)"},
            "elapsed_s": round(time.monotonic() - started),
            "git_commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                                         text=True).stdout.strip() or None,
            "machine": machine(),
            "versions": {"service": info.get("version"), "locust": locust_version(out, args.scenarios),
                         "kubernetes": cluster["kubernetes_server"], "helm": cluster["helm"]},
        }
        (out / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    finally:
        # Cleaning up must finish: a second Ctrl-C or SIGTERM now would leave releases behind.
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            if timeline is not None:
                timeline.stop()
                timeline.write(out)
                save_pod_logs(kube, ns, out)
            uninstall_everything(kube, ns, created_namespace)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    from celsius_loadtest.report import write_report

    report = write_report(out)
    log(f"report: {repo_relative(report)} ({time.monotonic() - started:.0f} s in all)")
    return out


def locust_version(out: Path, scenarios: list[str]) -> str | None:
    """Locust's version as its master printed it (`Starting Locust X.Y.Z`)."""
    for scenario in scenarios:
        path = out / f"{scenario}.log"
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                if "Starting Locust " in line:
                    return "locust " + line.split("Starting Locust ", 1)[1].split()[0]
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=os.environ.get("CELSIUS_PROG", "python -m celsius_loadtest cluster"),
                                     allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    if "CELSIUS_PROG" in os.environ:  # run by scripts/run.sh, which handles --down and never passes it on
        parser.add_argument("--down", action="store_true", help=RUN_SH_DOWN_HELP)
    locust = add_locust_arguments(parser, "Locust scenarios (the local job's defaults)")
    locust.add_argument("--workers", type=int, default=2, help="Locust workers (default 2; the master is one more pod)")
    locust.add_argument("--workers-wait", type=int, default=300,
                        help="seconds the master waits for all workers to connect (default 300)")
    parser.add_argument("--namespace", default="celsius-run",
                        help="namespace of the releases (default celsius-run; created and deleted if missing)")
    parser.add_argument("--celsius-set", action="append", default=None, metavar="KEY=VALUE",
                        help="a value for the celsius chart (helm --set; repeatable). Default: "
                             f"{' '.join(LOCAL_IMAGE_SETS)} (the local cluster's images); given, it replaces that")
    parser.add_argument("--locust-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a value for the locust chart (helm --set; repeatable), e.g. workers.resources.requests.cpu=1")
    parser.add_argument("--sample-seconds", type=finite, default=5.0,
                        help="timeline: seconds between samples (default 5; the metrics API refreshes every 15 s)")
    parser.add_argument("--settle", type=finite, default=0,
                        help="before each scenario, wait up to this many seconds for every HPA to be back at its "
                             "minimum (default 0: no wait; Kubernetes' scale-down window is 300 s)")
    parser.add_argument("--install-timeout", default="10m", help="helm install --timeout (default 10m)")
    parser.add_argument("--metrics-wait", type=finite, default=180,
                        help="after the install, wait up to this many seconds until the metrics API has a CPU "
                             "figure for every pod and the HPA a current utilisation, so the timeline has CPU "
                             "from the first scenario on (default 180; 0: no wait)")
    parser.add_argument("--results", default=str(REPO / "results"),
                        help="parent folder of the run folder (default: the repository's results/)")
    parser.add_argument("--run-id", default=None,
                        help="run folder name, a new folder inside --results (default: UTC timestamp)")
    parser.add_argument("--check-options", action="store_true",
                        help="check the options and exit (scripts/run.sh does, before it installs, builds or "
                             "starts anything)")
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Wrong options are refused as argparse refuses them: usage, "PROG: error: ...", exit 2.
    try:
        args.scenarios = _names(args.scenarios, list(SCENARIOS), "--scenarios")
    except ValueError as error:
        parser.error(str(error))
    if not args.scenarios:
        parser.error("nothing to run (--scenarios none)")
    wrong = out_of_range({
        "--users": (args.users >= 1, "at least 1"),
        "--workers": (args.workers >= 1, "at least 1"),
        "--duration": (args.duration >= 1, "at least 1 s"),
        "--spawn-rate": (args.spawn_rate is None or args.spawn_rate > 0, "above 0"),
        "--workers-wait": (args.workers_wait >= 1, "at least 1 s"),
        "--sample-seconds": (args.sample_seconds > 0, "above 0"),
        "--settle": (args.settle >= 0, "0 (no wait) or more"),
        "--metrics-wait": (args.metrics_wait >= 0, "0 (no wait) or more"),
        "--namespace": (NAMESPACE_NAME.fullmatch(args.namespace) is not None,
                        "a Kubernetes namespace name: at most 63 of a-z, 0-9 and '-', a letter or digit at each end"),
        "--install-timeout": (GO_DURATION.fullmatch(args.install_timeout) is not None,
                              "a duration as helm takes it, e.g. 90s, 10m, 1h30m"),
        "--celsius-set": (all(s.partition("=")[0].strip() and "=" in s for s in args.celsius_set or []),
                          "KEY=VALUE with a KEY"),
        "--locust-set": (all(s.partition("=")[0].strip() and "=" in s for s in args.locust_set), "KEY=VALUE with a KEY"),
    }) or results_problem(args.results) or run_folder_problem(args.results, args.run_id)
    if wrong:
        parser.error(wrong)
    if args.spawn_rate is None:
        args.spawn_rate = float(args.users)
    if args.check_options:
        return 0
    if args.celsius_set is None:
        args.celsius_set = list(LOCAL_IMAGE_SETS)
    args.command_line = scrub_paths(os.environ.get("CELSIUS_RUN_COMMAND")
                                    or "python -m celsius_loadtest cluster " + " ".join(argv))

    def terminate(signum, frame):  # SIGTERM behaves like Ctrl-C: unwind and uninstall everything
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        run(args)
    except KeyboardInterrupt:
        print("\ninterrupted: uninstalled every release this run installed", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError, CommandError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
