"""The main job on the local cluster, for real and short: `scripts/run.sh --cluster` with 5 s per
scenario (4 users, the locust chart's master + 2 workers), a timeline sample every 2 s. Checks
the results folder as a user would read it (Locust's files per scenario, timeline.csv,
answers.csv, run.json, the pods' logs, the report's sections and charts), that the job leaves
nothing installed, and that a job stopped with SIGTERM in the middle of a scenario uninstalls
everything too. A scenario with failed requests fails with Locust's failures and what the pods
logged of them.

Nothing here asserts a rate, a latency or a replica count: on a busy 2-core machine a 5 s run
may or may not move the HPA. What must hold on any machine is asserted: every scenario made
requests and none failed, every sample names each Deployment and the node, every answer counted
by the replicas' own counters lies between what Locust counted as answered and that plus the
requests in flight when Locust stopped its users."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from celsius_loadtest.report import answer_shares, load_run
from clusterlib import REPO, helm, kubectl, project_version, wait_until

NAMESPACE = "celsius-run"  # the job's default
USERS = 4
RUN_SH = REPO / "scripts" / "run.sh"
CSV_HEADERS = {
    "_stats.csv": ["Type", "Name", "Request Count", "Failure Count", "Median Response Time", "Requests/s"],
    "_stats_history.csv": ["Timestamp", "User Count", "Type", "Name", "Requests/s", "Total Request Count"],
    "_failures.csv": ["Method", "Name", "Error", "Occurrences"],
    "_exceptions.csv": ["Count", "Message", "Traceback", "Nodes"],
}
ENDPOINTS = {"native": {"/convert"}, "model": {"/convert/model"}, "mixed": {"/convert", "/convert/model"}}


def nothing_installed() -> bool:
    """No release of the job's namespace left, and the namespace it created gone."""
    left = kubectl("get", "namespace", NAMESPACE, "--ignore-not-found", "-o", "name").strip()
    return left == "" and not helm("list", "-n", NAMESPACE, "-a", "-q").stdout.strip()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    assert nothing_installed(), "the job's namespace exists before the run"
    results = tmp_path_factory.mktemp("results")
    started = time.monotonic()
    done = subprocess.run([str(RUN_SH), "--cluster", "--duration", "5s", "--users", str(USERS), "--sample-seconds",
                           "2", "--results", str(results), "--run-id", "cluster-e2e"],
                          capture_output=True, text=True, timeout=1800)
    print(f"scripts/run.sh --cluster (5 s per scenario): exit {done.returncode} in {time.monotonic() - started:.0f} s")
    print("\n".join(line for line in done.stdout.splitlines() if line.startswith(("==>", "    ", "[cluster"))))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return results / "cluster-e2e"


def stats(run_dir: Path, scenario: str) -> pd.DataFrame:
    return pd.read_csv(run_dir / f"{scenario}_stats.csv")


@pytest.mark.parametrize("scenario", ["native", "model", "mixed"])
def test_locusts_files_of_each_scenario_came_out_of_the_master_pod(run_dir, scenario):
    for suffix, header in CSV_HEADERS.items():
        columns = pd.read_csv(run_dir / f"{scenario}{suffix}", nrows=0).columns.tolist()
        assert all(name in columns for name in header), (suffix, columns)
    assert (run_dir / f"{scenario}.html").stat().st_size > 1000
    assert "Starting Locust" in (run_dir / f"{scenario}.log").read_text()
    table = stats(run_dir, scenario)
    endpoints = {row["Name"]: (row["Request Count"], row["Failure Count"]) for _, row in table.iterrows()}
    assert set(endpoints) == ENDPOINTS[scenario] | {"Aggregated"}, endpoints
    failed = (run_dir / f"{scenario}_failures.csv").read_text()
    for name, (requests, failures) in endpoints.items():
        assert requests > 0 and failures == 0, (scenario, name, requests, failures, failed, failed_requests(run_dir))


def failed_requests(run_dir: Path) -> str:
    """What the pods logged of requests that failed, and their other events (pods/*.log keeps only
    those; cluster.quiet_log): the message for a scenario with failures."""
    return "\n".join(f"{path.name}:\n{path.read_text()[-3000:]}" for path in sorted((run_dir / "pods").glob("*.log")))


def test_each_pod_of_the_release_left_its_log(run_dir):
    logs = {path.name: path.read_text() for path in (run_dir / "pods").glob("*.log")}
    service = [text for name, text in logs.items() if not name.startswith("celsius-tf-serving-")]
    model = [text for name, text in logs.items() if name.startswith("celsius-tf-serving-")]
    assert service and model, sorted(logs)
    assert all('"msg":"listening"' in text for text in service), failed_requests(run_dir)
    # The answered requests' access-log lines are left out; the events of each pod stay.
    assert all('"status":200' not in text for text in service)
    assert all(text.strip() for text in model)


def test_the_timeline_has_every_deployment_and_the_node_in_every_scenario(run_dir):
    timeline = pd.read_csv(run_dir / "timeline.csv")
    for scenario in ("native", "model", "mixed"):
        rows = timeline[timeline["phase"] == scenario]
        assert len(set(rows["time"])) >= 3, f"{scenario}: fewer than 3 samples"
        for kind, name in (("Deployment", "celsius"), ("Deployment", "celsius-tf-serving"), ("Node", "celsius-node")):
            mine = rows[(rows["kind"] == kind) & (rows["name"] == name)]
            assert len(mine) == len(set(rows["time"])), (scenario, name)
            assert (mine["pods"] >= 1).all() and (mine["ready"] >= 1).all()
        jobs = set(rows.loc[rows["kind"] == "Job", "name"])
        assert {f"locust-{scenario}-master", f"locust-{scenario}-worker"} <= jobs, jobs
        server = rows[(rows["kind"] == "Deployment") & (rows["name"] == "celsius")]
        assert set(server["hpa_target_pct"]) == {50}  # the chart's default HPA, read from the cluster
        # Certain because the job waits for the metrics API before its first scenario.
        assert server["cpu_m"].notna().any(), "no CPU figure from the metrics API"
        node = rows[rows["kind"] == "Node"]
        assert set(node["cpu_request_m"]) == {2000.0} or len(set(node["cpu_request_m"])) == 1
    assert timeline["time"].is_monotonic_increasing


def test_the_replicas_counted_what_locust_saw_answered(run_dir):
    answers = pd.read_csv(run_dir / "answers.csv")
    assert set(answers["route"]) == {"/convert", "/convert/model"}
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", a)
               for a in set(answers["app_id"]))
    shares = answer_shares(load_run(run_dir))
    for scenario in ("native", "model", "mixed"):
        counted = int(shares.loc[shares["phase"] == scenario, "answers"].sum())
        aggregated = stats(run_dir, scenario).set_index("Name").loc["Aggregated"]
        answered = int(aggregated["Request Count"]) - int(aggregated["Failure Count"])
        mine = shares[shares["phase"] == scenario]
        print(f"{scenario}: replicas counted {counted} answers, Locust {answered}; shares "
              f"{dict(zip(mine['app_id'].str[:8], mine['share'].round(3)))}")
        assert answered <= counted <= answered + USERS, (scenario, counted, answered)


def test_run_json_names_the_command_and_the_clusters_versions(run_dir):
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["command"].startswith("scripts/run.sh --cluster --duration 5s")
    assert (meta["scenarios"], meta["users"], meta["duration_s"]) == (["native", "model", "mixed"], USERS, 5)
    cluster = meta["cluster"]
    assert cluster["kubernetes_server"] == "v1.34.2" and cluster["kubectl"] == "v1.34.2"
    assert cluster["helm"].startswith("v3.")
    # The job waited for the metrics API before its first scenario (what makes the CPU figures of
    # every scenario above certain, also on a 5 s scenario).
    assert cluster["metrics_wait_s"] is not None and cluster["metrics_wait_s"] >= 0
    assert cluster["nodes"][0]["kubelet"] == "v1.34.2" and cluster["nodes"][0]["container_runtime"].startswith(
        "containerd://")
    assert cluster["celsius_sets"] == ["tfServing.image.repository=celsius/model-server"]
    version = project_version()
    assert {f"celsius/server:{version}", f"celsius/model-server:{version}", f"celsius/loadtest:{version}"} <= set(
        cluster["images"])
    assert [h["target"] for h in cluster["hpas"]] == ["Deployment/celsius"]
    assert set(cluster["scenario_windows"]) == {"native", "model", "mixed"}
    assert meta["versions"]["locust"].startswith("locust 2.") and meta["versions"]["service"] == version
    for path in run_dir.iterdir():
        if path.suffix in (".json", ".md", ".csv"):
            assert not re.search(r"(?<![\w.])/(work|root|home|tmp)/", path.read_text()), path.name


def test_the_report_has_the_cluster_sections_and_charts(run_dir):
    report = (run_dir / "report.md").read_text()
    for title in ("On a Kubernetes cluster", "Locust scenarios", "Replicas and CPU under load",
                  "Answers per replica", "Run"):
        assert f"\n## {title}\n" in report, title
    assert "Not in a cluster run" in report
    for local_only in ("## Capacity sweep", "## Against native", "## Where the time goes", "## Every step"):
        assert local_only not in report
    for chart in ("cluster_timeline.png", "answer_spread.png", "latency_percentiles.png", "over_time.png"):
        assert (run_dir / chart).stat().st_size > 10_000 and f"]({chart})" in report, chart


def test_the_job_left_nothing_installed(run_dir):
    assert nothing_installed()


def test_a_job_stopped_mid_scenario_uninstalls_everything(run_dir, tmp_path):
    """SIGTERM to scripts/run.sh while Locust runs: it passes it on, the job uninstalls its
    releases (the Locust Jobs go with theirs) and deletes its namespace, and exits 143."""
    job = subprocess.Popen([str(RUN_SH), "--cluster", "--scenarios", "native", "--duration", "300s", "--users", "2",
                            "--results", str(tmp_path), "--run-id", "stopped"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_until("the Locust release of the stopped run", lambda: "locust-native" in helm(
            "list", "-n", NAMESPACE, "-q").stdout, 900, 3)
        wait_until("its master pod", lambda: kubectl("-n", NAMESPACE, "get", "pods", "-l",
                                                     "app.kubernetes.io/component=master", "-o", "name"), 300, 2)
        stopped = time.monotonic()
        os.kill(job.pid, signal.SIGTERM)
        output, _ = job.communicate(timeout=600)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    print(f"run.sh --cluster stopped by SIGTERM: exit {job.returncode} "
          f"{time.monotonic() - stopped:.0f} s later; its last lines:\n"
          + "\n".join(output.strip().splitlines()[-5:]))
    assert job.returncode == 143, output[-3000:]
    assert "uninstalling locust-native" in output
    assert nothing_installed()
