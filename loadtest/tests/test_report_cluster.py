"""The report's cluster sections on a hand-made cluster run whose answers were worked out by hand.

fixtures/cluster_run: three scenarios (native, model, mixed) as `scripts/run.sh --cluster` writes
them, with a timeline sampled at t = 0 (setup), 10-70 (native), 80-140 (model), 150-210 (mixed)
and 215 (after), Unix time 1,700,000,000 + t.

Deployment `celsius` (HPA 1-5 at 50 %), computed utilisation = cpu_m / cpu_request_m:
- native: pods 1, 1, 2, 2, 2 (the second from t = 40: 30 s after the start at 10); HPA 1, 70, 80,
  45, 40 %; computed 5/500, 350/500, 400/500, 450/1000, 400/1000 = 1, 70, 80, 45, 40 % -> mean
  47.2 %, highest 80 %; node 200..1,900 of 2,000 m -> highest 95 %;
- model: pods 2, 3, 3, 3, 3 (third at t = 95: 15 s); HPA highest 90 %; computed 20, 90, 60, 55,
  52 % -> mean 55.4 %; node highest 100 %;
- mixed: pods 3, 3, 3, 2, 2 (most: 3 at 0 s, end 2); HPA highest 45 %; computed 40, 45, 42, 30,
  30 % -> mean 37.4 %; node highest 60 %.
Deployment `celsius-tf-serving` (no HPA, 1 pod, 1000m request): model 50, 600, 700, 650, 640 m
-> mean 52.8 %, highest 70 %. A Job row (locust-native-worker) is not a Deployment.

Answers (cumulative counters per replica, summed over /convert and /convert/model):
- native: replica A 10 -> 3,010 (3,000), B appears at t = 40 with 0 -> 1,000: 75 % / 25 %;
- model: A 3,010 -> 4,010, B 1,000 -> 2,000, C appears at t = 95 -> 1,000: a third each;
- mixed: A 4,010 -> 5,010 (1,000), B 2,000 -> 2,600 (its last sample, t = 180: removed; 600),
  C 1,000 -> 1,200 (200; its container restarted in the same pod with a new app_id D),
  D 0 -> 300: of 2,100: 47.6, 28.6, 9.5, 14.3 %.
Locust counted 4,000, 3,003 (3 connections reset: no answer) and 2,100 requests.
A's rate in native between t = 25 and 40: (2,010 - 1,010) / 15 s = 66.7 answers/s.
Locust's history: a row every 5 s, its total growing by 333 a row in native: over 3 rows (15 s)
999 / 15 = 66.6 req/s.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from celsius_loadtest.report import (
    SECTIONS,
    answer_shares,
    load_run,
    locust_rate,
    render_markdown,
    replica_rates,
    scaling_summary,
    write_report,
)

FIXTURE = Path(__file__).parent / "fixtures" / "cluster_run"
LOCAL_FIXTURE = Path(__file__).parent / "fixtures" / "run"
A, B = "aaaaaaaa-1111-4111-8111-111111111111", "bbbbbbbb-2222-4222-8222-222222222222"
C, D = "cccccccc-3333-4333-8333-333333333333", "dddddddd-4444-4444-8444-444444444444"


@pytest.fixture()
def run_dir(tmp_path) -> Path:
    target = tmp_path / "20261201T120000Z"
    shutil.copytree(FIXTURE, target)
    return target


def test_answer_shares_per_scenario(run_dir):
    shares = answer_shares(load_run(run_dir))
    got = {(r["phase"], r["app_id"]): (r["answers"], round(r["share"], 4)) for r in shares.to_dict("records")}
    assert got == {
        ("native", A): (3000, 0.75), ("native", B): (1000, 0.25),
        ("model", A): (1000, 0.3333), ("model", B): (1000, 0.3333), ("model", C): (1000, 0.3333),
        ("mixed", A): (1000, 0.4762), ("mixed", B): (600, 0.2857), ("mixed", C): (200, 0.0952),
        ("mixed", D): (300, 0.1429)}
    # Replicas in the order they first appeared; the restarted container (D) after the others.
    assert list(shares[shares["phase"] == "mixed"]["app_id"]) == [A, B, C, D]
    assert list(shares[shares["phase"] == "mixed"]["pod"]) == [
        "celsius-7d9f-aaaaa", "celsius-7d9f-bbbbb", "celsius-7d9f-ccccc", "celsius-7d9f-ccccc"]


def test_replica_rates_from_counter_differences(run_dir):
    rates = dict(replica_rates(load_run(run_dir), "native"))
    a = rates[A].set_index("seconds")["rps"]
    assert a[15] == pytest.approx(1000 / 15)  # t = 25: (1,010 - 10) / 15 s
    assert a[30] == pytest.approx(1000 / 15)
    assert list(rates[B]["seconds"]) == [45, 60]  # B first seen at 40: no rate before its second sample
    assert list(rates[B]["rps"]) == pytest.approx([500 / 15, 500 / 15])


def test_locust_rate_from_its_request_total(run_dir):
    history = load_run(run_dir).scenario("native").history
    rate = locust_rate(history)
    assert list(rate["timestamp"]) == list(history["timestamp"])[3:]
    assert list(rate["rps"]) == pytest.approx([66.6] * (len(history) - 3))


def test_scaling_summary(run_dir):
    summary = {(r["phase"], r["deployment"]): r for r in scaling_summary(load_run(run_dir))}
    assert set(summary) == {(p, d) for p in ("native", "model", "mixed") for d in ("celsius", "celsius-tf-serving")}
    native = summary[("native", "celsius")]
    assert (native["pods_start"], native["pods_max"], native["max_at_s"], native["pods_end"]) == (1, 2, 30, 2)
    assert (native["hpa_max_pct"], native["hpa_target_pct"]) == (80, 50)
    assert native["util_mean_pct"] == pytest.approx(47.2) and native["util_max_pct"] == pytest.approx(80)
    assert native["node_max_pct"] == pytest.approx(95)
    model = summary[("model", "celsius")]
    assert (model["pods_start"], model["pods_max"], model["max_at_s"], model["hpa_max_pct"]) == (2, 3, 15, 90)
    assert model["util_mean_pct"] == pytest.approx(55.4) and model["node_max_pct"] == pytest.approx(100)
    mixed = summary[("mixed", "celsius")]
    assert (mixed["pods_start"], mixed["pods_max"], mixed["max_at_s"], mixed["pods_end"]) == (3, 3, 0, 2)
    assert mixed["util_mean_pct"] == pytest.approx(37.4) and mixed["hpa_max_pct"] == 45
    serving = summary[("model", "celsius-tf-serving")]
    assert not serving["has_hpa"] and serving["hpa_max_pct"] is None
    assert serving["util_mean_pct"] == pytest.approx(52.8) and serving["util_max_pct"] == pytest.approx(70)


def section(markdown: str, title: str) -> str:
    """The text of one `## title` section."""
    assert f"## {title}\n" in markdown, f"no section {title!r}"
    return markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the first GFM table in `text`, rendered by markdown-it-py, cells as text."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    rows, row, in_body = [], None, False
    for t in tokens:
        if t.type == "tbody_open":
            in_body = True
        elif t.type == "tbody_close":
            break
        elif in_body and t.type == "tr_open":
            row = []
        elif in_body and t.type == "inline" and row is not None:
            row.append(t.content.replace("\\", ""))
        elif in_body and t.type == "tr_close":
            rows.append(row)
    return rows


def test_report_sections_and_charts_of_a_cluster_run(run_dir):
    report = write_report(run_dir).read_text()
    for chart in ("cluster_timeline.png", "answer_spread.png", "latency_percentiles.png", "over_time.png"):
        assert (run_dir / chart).stat().st_size > 10_000, chart
        assert f"]({chart})" in report
    # The local-only parts are absent, and the report says so.
    assert not (run_dir / "sweep_latency.png").exists() and not (run_dir / "cpu_per_request.png").exists()
    for local_only in ("## Capacity sweep", "## Against native", "## Where the time goes", "## Every step"):
        assert local_only not in report
    cluster = section(report, "On a Kubernetes cluster")
    assert "Not in a cluster run" in cluster and "capacity sweep" in cluster and "wrk" in cluster
    assert "Kubernetes v1.34.2" in cluster and "1-5 replicas at 50 % CPU" in cluster
    assert "tfServing.image.repository=celsius/model-server" in cluster
    assert "the job itself (kubectl, Helm, the timeline's reads) used 42 CPU seconds in 600 s" in cluster

    scaling = section(report, "Replicas and CPU under load")
    rows = table_rows(scaling)
    assert rows[0] == ["native", "celsius", "1", "2 (at 30 s)", "2", "50 %", "80 %", "47 %", "80 %", "95 %"]
    assert rows[1] == ["native", "celsius-tf-serving", "1", "1 (at 0 s)", "1", "no HPA", "-", "1 %", "1 %", "95 %"]
    assert rows[2][:5] == ["model", "celsius", "2", "3 (at 15 s)", "3"]
    assert "`native`: the HPA scaled celsius out from 1 to 2 replicas (30 s after the start)" in scaling
    assert "`mixed`: the HPA scaled celsius in from 3 to 2 replicas" in scaling

    spread = section(report, "Answers per replica")
    rows = table_rows(spread)
    assert rows[:2] == [["native", "celsius-7d9f-aaaaa", A, "3,000", "75.0 %"],
                        ["native", "celsius-7d9f-bbbbb", B, "1,000", "25.0 %"]]
    assert ["mixed", "celsius-7d9f-ccccc", D, "300", "14.3 %"] in rows
    assert "`model`: 3,000 answers counted by 3 replicas; Locust counted 3,003 requests" in spread


def test_locusts_own_cpu_from_its_pods(run_dir):
    report = render_markdown(load_run(run_dir), [])
    limits = section(report, "What Locust can and cannot measure here")
    # One Job sample in native: locust-native-worker at 180.5 m.
    assert ("- `native`: Locust drove 67 req/s on `/convert`; its pods (master and workers) used at most 0.18 CPU "
            "cores (metrics API).") in limits
    assert "- `model`: Locust drove 50 req/s on `/convert/model`." in limits


def test_locusts_cpu_counts_only_samples_with_every_pod(run_dir):
    # The metrics API may report the master before the workers: such a sample (10 m) is not the
    # pods' use; with both (t = 110: 10 + 300 m) it is.
    timeline = run_dir / "timeline.csv"
    with timeline.open("a") as out:
        out.write("model,100,1700000100,Job,locust-model-master,1,1,,,,10.0,100\n"
                  "model,100,1700000100,Job,locust-model-worker,2,2,,,,,200\n")
    limits = section(render_markdown(load_run(run_dir), []), "What Locust can and cannot measure here")
    assert "- `model`: Locust drove 50 req/s on `/convert/model`." in limits
    with timeline.open("a") as out:
        out.write("model,110,1700000110,Job,locust-model-master,1,1,,,,10.0,100\n"
                  "model,110,1700000110,Job,locust-model-worker,2,2,,,,300.0,200\n")
    limits = section(render_markdown(load_run(run_dir), []), "What Locust can and cannot measure here")
    assert "its pods (master and workers) used at most 0.31 CPU cores (metrics API)" in limits


def test_a_local_run_has_no_cluster_sections(tmp_path):
    target = tmp_path / "local"
    shutil.copytree(LOCAL_FIXTURE, target)
    report = render_markdown(load_run(target), [])
    for title in ("On a Kubernetes cluster", "Replicas and CPU under load", "Answers per replica"):
        assert f"## {title}" not in report


def test_cluster_sections_are_listed():
    names = [s.__name__ for s in SECTIONS]
    assert names.index("section_cluster") == 1  # right after the title: what kind of run this is
    assert {"section_autoscaling", "section_answer_spread"} <= set(names)
