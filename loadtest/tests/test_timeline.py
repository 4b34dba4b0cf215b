"""The cluster job's timeline (kube.py) on API answers whose figures were worked out by hand.

fixtures/cluster_api holds what one sample reads, in the API's shapes: `kubectl get
deployments,jobs,hpa,pods -o json` (workloads.json), `kubectl get nodes -o json`, the metrics
API's PodMetricsList and NodeMetricsList, and a service replica's /metrics text
(service_metrics.txt, captured from the real celsius-server after 7 good and 1 malformed POST
/convert, 2 POST /convert/model answered 503, one /healthz and one /readyz).

Expected, per workload:
- Deployment celsius: pods aaaaa, bbbbb (ready), ccccc (not ready, request `0.5`); zzzzz is being
  deleted and does not count: 3 pods, 2 ready. Metrics for aaaaa (400000000n = 400 m) and bbbbb
  (250m), none yet for ccccc: 650 m over their 1,000 m of requests = 65 %. Its HPA: desired 3,
  62 % now, target 50 %;
- Deployment celsius-tf-serving: 1 pod, 300000u = 300 m of a `1` (1,000 m) request = 30 % (the
  init container's request does not count, as in the HPA);
- Job locust-model-worker: pods aaaaa and bbbbb (ccccc Succeeded does not count): 95123456n +
  0.1 = 195.1 m of 200 m;
- the node: 1234567890n = 1,234.6 m of 2 allocatable CPUs (2,000 m).
The replica's counters: /convert 8 (every status), /convert/model 2; /healthz, /readyz not counted.
"""

from __future__ import annotations

import copy
import json
import shutil
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from celsius_loadtest import kube
from celsius_loadtest.kube import (
    AnswerSample,
    CommandError,
    Snapshot,
    Timeline,
    WorkloadSample,
    answer_samples,
    cpu_millicores,
    parse_service_metrics,
    workload_samples,
)
from celsius_loadtest.report import answer_shares, load_run

API = Path(__file__).parent / "fixtures" / "cluster_api"
CLUSTER_RUN = Path(__file__).parent / "fixtures" / "cluster_run"
REAL_APP_ID = "9cd2637d-990d-4168-8311-6774e0aac046"
OTHER_APP_ID = "0b5c7a8e-1d2f-4a3b-9c4d-5e6f7a8b9c0d"


def load(name: str) -> dict:
    return json.loads((API / name).read_text())


def metrics_text(app_id: str = REAL_APP_ID, convert: int | None = None, model: int | None = None) -> str:
    """The captured /metrics text, with another app_id and/or other counts of the 200 answers."""
    text = (API / "service_metrics.txt").read_text().replace(REAL_APP_ID, app_id)
    if convert is not None:
        text = text.replace('route="/convert",method="POST",status="200"} 7',
                            f'route="/convert",method="POST",status="200"}} {convert}')
    if model is not None:
        text = text.replace('route="/convert/model",method="POST",status="503"} 2',
                            f'route="/convert/model",method="POST",status="503"}} {model}')
    return text


def snapshot(**metrics: str) -> Snapshot:
    listed = load("workloads.json")["items"]
    return Snapshot(
        workloads=[i for i in listed if i["kind"] in ("Deployment", "Job")],
        hpas=[i for i in listed if i["kind"] == "HorizontalPodAutoscaler"],
        pods=[i for i in listed if i["kind"] == "Pod"],
        pod_metrics=load("pod_metrics.json")["items"],
        nodes=load("nodes.json")["items"],
        node_metrics=load("node_metrics.json")["items"],
        service_metrics=metrics)


@pytest.mark.parametrize("quantity, millicores", [
    ("500m", 500), ("1", 1000), ("0.5", 500), ("2", 2000), ("1500u", 1.5), ("12345678n", 12.345678), (0, 0),
    ("250m", 250)])
def test_cpu_quantities(quantity, millicores):
    assert cpu_millicores(quantity) == pytest.approx(millicores)


def test_the_services_counters_from_its_real_metrics_text():
    counters = parse_service_metrics(metrics_text())
    assert counters.app_id == REAL_APP_ID and counters.version == "0.1.0"
    assert counters.answers == {"/convert": 8, "/convert/model": 2}


@pytest.mark.parametrize("text", ["", "<html><body><h1>502 Bad Gateway</h1></body></html>",
                                  'celsius_http_requests_total{route="/convert"} 5\n',  # no build_info
                                  'celsius_build_info{app_id="x"} 1\ncelsius_http_requests_total{route='])
def test_text_that_is_not_the_services_metrics_gives_nothing(text):
    assert parse_service_metrics(text) is None


def test_workload_samples():
    rows = workload_samples(snapshot(), "model", 12.34, 1_700_000_012.3456)
    by_name = {(r.kind, r.name): r for r in rows}
    assert [(r.kind, r.name) for r in rows] == [("Deployment", "celsius"), ("Deployment", "celsius-tf-serving"),
                                                ("Job", "locust-model-worker"), ("Node", "celsius-node")]
    server = by_name[("Deployment", "celsius")]
    assert (server.phase, server.t_s, server.time) == ("model", 12.3, 1_700_000_012.346)
    assert (server.pods, server.ready, server.hpa_desired, server.hpa_utilisation_pct, server.hpa_target_pct) == (
        3, 2, 3, 62, 50)
    assert (server.cpu_m, server.cpu_request_m, server.utilisation_pct) == (650.0, 1000.0, 65.0)
    serving = by_name[("Deployment", "celsius-tf-serving")]
    assert (serving.pods, serving.ready, serving.hpa_desired, serving.cpu_m, serving.cpu_request_m) == (
        1, 1, None, 300.0, 1000.0)
    assert serving.utilisation_pct == 30.0
    workers = by_name[("Job", "locust-model-worker")]
    assert (workers.pods, workers.ready, workers.cpu_m, workers.cpu_request_m) == (2, 2, 195.1, 200.0)
    node = by_name[("Node", "celsius-node")]
    assert (node.cpu_m, node.cpu_request_m) == (1234.6, 2000.0)
    assert node.utilisation_pct == pytest.approx(61.73)


def test_without_the_metrics_api_replicas_are_still_counted():
    s = snapshot()
    s.pod_metrics = s.node_metrics = None
    server = workload_samples(s, "native", 0, 0)[0]
    assert (server.pods, server.ready, server.cpu_m, server.cpu_request_m, server.utilisation_pct) == (
        3, 2, None, None, None)


def test_selectors_with_expressions():
    s = snapshot()
    deployment = copy.deepcopy(s.workloads[0])
    deployment["spec"]["selector"] = {"matchExpressions": [
        {"key": "app.kubernetes.io/component", "operator": "In", "values": ["server", "other"]},
        {"key": "app.kubernetes.io/instance", "operator": "NotIn", "values": ["locust"]},
        {"key": "app.kubernetes.io/name", "operator": "Exists"},
        {"key": "batch.kubernetes.io/controller-uid", "operator": "DoesNotExist"}]}
    s.workloads = [deployment]
    assert workload_samples(s, "x", 0, 0)[0].pods == 3


def test_answer_samples_per_replica_and_route_at_the_time_each_was_read():
    s = snapshot(**{"celsius-5c8b7-aaaaa": metrics_text(),
                    "celsius-5c8b7-bbbbb": metrics_text(OTHER_APP_ID, convert=100, model=40),
                    "celsius-5c8b7-ccccc": "upstream connect error"})
    s.service_metrics_at = {"celsius-5c8b7-aaaaa": 1000.5, "celsius-5c8b7-bbbbb": 1001.25}
    rows = answer_samples(s, "mixed", 20.0, 1002.0)  # the sample ended at 1002 (t = 20 s)
    assert [(r.phase, r.t_s, r.time, r.pod, r.app_id, r.route, r.answers) for r in rows] == [
        ("mixed", 18.5, 1000.5, "celsius-5c8b7-aaaaa", REAL_APP_ID, "/convert", 8),
        ("mixed", 18.5, 1000.5, "celsius-5c8b7-aaaaa", REAL_APP_ID, "/convert/model", 2),
        ("mixed", 19.2, 1001.25, "celsius-5c8b7-bbbbb", OTHER_APP_ID, "/convert", 101),
        ("mixed", 19.2, 1001.25, "celsius-5c8b7-bbbbb", OTHER_APP_ID, "/convert/model", 40)]
    s.service_metrics_at = {}  # no time of its own: the sample's
    assert {(r.t_s, r.time) for r in answer_samples(s, "mixed", 20.0, 1002.0)} == {(20.0, 1002.0)}


class Script:
    """A source that answers the given snapshots in turn (an exception is raised)."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self) -> Snapshot:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_timeline_labels_samples_and_survives_a_failing_read(tmp_path):
    clock = iter([100.0, 105.0, 112.5, 130.0]).__next__  # started, then one value per successful sample
    source = Script(snapshot(**{"celsius-5c8b7-aaaaa": metrics_text(convert=10)}),
                    CommandError("kubectl get ... failed (1): the server is currently unable to handle the request"),
                    snapshot(**{"celsius-5c8b7-aaaaa": metrics_text(convert=510),
                                "celsius-5c8b7-bbbbb": metrics_text(OTHER_APP_ID, convert=300, model=0)}),
                    snapshot(**{"celsius-5c8b7-aaaaa": metrics_text(convert=610),
                                "celsius-5c8b7-bbbbb": metrics_text(OTHER_APP_ID, convert=700, model=0)}))
    timeline = Timeline(source, clock=clock)
    timeline.set_phase("setup")
    timeline.sample()
    timeline.set_phase("native")
    timeline.sample()  # the API failed: counted, nothing recorded
    timeline.sample()
    timeline.set_phase("after")
    timeline.sample()
    assert [(s.phase, s.t_s) for s in timeline.of("celsius")] == [("setup", 5.0), ("native", 12.5), ("after", 30.0)]
    assert timeline.errors == ["native: kubectl get ... failed (1): the server is currently unable to handle the "
                               "request"]
    assert timeline.max_utilisation("celsius") == 62 and timeline.max_replicas("celsius") == 3
    assert "celsius" in timeline.show("native", "celsius")

    timeline_csv, answers_csv = timeline.write(tmp_path)
    table = pd.read_csv(timeline_csv)
    assert list(table.columns) == [f for f in WorkloadSample.__dataclass_fields__]
    assert len(table) == 3 * 4 and set(table["phase"]) == {"setup", "native", "after"}
    answers = pd.read_csv(answers_csv)
    assert list(answers.columns) == [f for f in AnswerSample.__dataclass_fields__]
    # 1 + 2 + 2 replicas sampled, two routes each.
    assert len(answers) == 10


def test_what_the_timeline_writes_is_what_the_report_reads(tmp_path):
    """Timeline.write's files in a run folder give the report's answer shares: replica A at 13 ->
    513 -> 613 (/convert 10/510/610 answered 200 + 1 answered 400, /convert/model 2), B first
    seen in `native` at 303 (300 + 1 + 2: it started then, so all of them count), 703 at the end
    of `mixed`: native A 500, B 303; mixed A 100, B 400."""
    run_dir = tmp_path / "run"
    shutil.copytree(CLUSTER_RUN, run_dir)
    clock = iter([0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).__next__
    timeline = Timeline(Script(
        snapshot(**{"a": metrics_text(convert=10)}),
        snapshot(**{"a": metrics_text(convert=10)}),
        snapshot(**{"a": metrics_text(convert=510), "b": metrics_text(OTHER_APP_ID, convert=300)}),
        snapshot(**{"a": metrics_text(convert=510), "b": metrics_text(OTHER_APP_ID, convert=300)}),
        snapshot(**{"a": metrics_text(convert=610), "b": metrics_text(OTHER_APP_ID, convert=700)})), clock=clock)
    for phase in ("setup", "native", "native", "mixed", "mixed"):
        timeline.set_phase(phase)
        timeline.sample()
    timeline.write(run_dir)
    shares = answer_shares(load_run(run_dir))
    got = {(r["phase"], r["pod"], r["app_id"]): r["answers"] for r in shares.to_dict("records")}
    assert got == {("native", "a", REAL_APP_ID): 500, ("native", "b", OTHER_APP_ID): 303,
                   ("mixed", "a", REAL_APP_ID): 100, ("mixed", "b", OTHER_APP_ID): 400}


def test_the_sampling_thread_runs_until_stopped():
    source = Script(snapshot())
    timeline = Timeline(source, interval=0.05).start()
    deadline = time.monotonic() + 30
    while source.calls < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    timeline.stop()
    calls = source.calls
    assert calls >= 3
    assert not any(t.name == "timeline" for t in threading.enumerate())
    time.sleep(0.2)
    assert source.calls == calls
    assert len(timeline.of("celsius")) == calls


def test_kube_commands_fail_with_their_output(tmp_path):
    """A real kubectl-less environment: the command is not found, or fails with its stderr."""
    k = kube.Kube(env={"PATH": str(tmp_path)})
    with pytest.raises(FileNotFoundError):
        k.kubectl("version")
    with pytest.raises(CommandError, match="No such file"):
        kube.Kube().run(["ls", str(tmp_path / "missing")])
