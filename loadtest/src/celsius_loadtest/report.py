"""The comparison report: one run folder (Locust's CSV files, sweep.json, run.json) -> report.md
and its PNG charts.

The report is a list of sections (`SECTIONS`: one function per section, each `(run, charts) ->
Markdown lines`) and a list of charts (`CHARTS`: one function per PNG, each `run -> file name
or None`); a new section or chart is one function added to a list.

Every piece of text that did not come from this file (error messages, names, settings) goes
through `md_text` (and tables through `md_table`), so a failure message holding `|`, HTML or
line breaks (an nginx error page) shows as text and cannot break the table it is in; and the
finished report goes through `scrub_paths`, so no machine path ends up in a committed file.

Locust's columns changed across versions (the failures file gained `First Seen` and `Last
Seen` in 2.44), so every CSV file is read by header name and columns a version lacks are
simply absent. Locust's percentiles are whole milliseconds; the sweep's are microseconds.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from celsius_loadtest import steps as plan
from celsius_loadtest.stack import REPO, scrub_paths

SCENARIO_ORDER = ["native", "model", "mixed"]
NATIVE_ENDPOINT = "/convert"
MODEL_ENDPOINT = "/convert/model"
PROCESSES = {"service": "service", "model_server": "model server"}  # CPU per request, stacked in this order

# Canonical name <- Locust header, for _stats.csv.
STATS_COLUMNS = {
    "Type": "method", "Name": "name", "Request Count": "requests", "Failure Count": "failures",
    "Average Response Time": "avg_ms", "Requests/s": "rps", "Failures/s": "fps",
    "50%": "p50_ms", "95%": "p95_ms", "99%": "p99_ms", "Max Response Time": "max_ms",
}
HISTORY_COLUMNS = {
    "Timestamp": "timestamp", "User Count": "users", "Name": "name", "Requests/s": "rps",
    "Failures/s": "fps", "50%": "p50_ms", "95%": "p95_ms", "99%": "p99_ms", "Total Request Count": "total_requests",
}
# Locust's workers report to the master every 3 s (locust/runners.py, WORKER_REPORT_INTERVAL).
WORKER_REPORT_S = 3


# ---------------------------------------------------------------- Markdown safety

MAX_CELL_CHARS = 300
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~$])")  # backslash-escapable in CommonMark/GFM (spec 2.4)


def md_text(value, limit: int = MAX_CELL_CHARS) -> str:
    """Any value as inline Markdown text that renders as itself: one line (line breaks of every
    kind become spaces), control and format characters (NUL, bidi overrides, zero-width) shown
    as U+FFFD, at most `limit` characters (then an ellipsis and the full length), and every
    character with a Markdown or HTML meaning backslash-escaped (CommonMark 2.4: any ASCII
    punctuation may be escaped), so `|` cannot end a table cell and `<html>` is shown, not
    rendered."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return _MARKDOWN_SPECIAL.sub(r"\\\1", _one_line(str(value), limit))


def _one_line(text: str, limit: int) -> str:
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    text = "".join("\ufffd" if unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs") else ch for ch in text)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > limit:
        text = f"{text[:limit].rstrip()}\u2026 ({len(text):,} characters)"
    return text


def md_code(value, limit: int = MAX_CELL_CHARS) -> str:
    """Any value as an inline code span outside tables: one line, control characters as U+FFFD,
    fenced with more backticks than the longest run inside (CommonMark 6.1: no escapes work in
    a code span, so none are added)."""
    text = md_text(value, limit=limit) if value is None else _one_line(str(value), limit)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_table(headers: list[str], rows: list[list], align: str = "") -> list[str]:
    """A GFM table; every cell through `md_text`. `align`: one letter per column, l or r
    (default: the first column left, the others right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(md_text(h) for h in headers) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(md_text(cell) for cell in row) + " |" for row in rows]
    return lines


# ---------------------------------------------------------------- reading a run folder

def _read(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    # The Python engine: pandas' C parser ends a field at a NUL byte (a failure message holding
    # one lost the rest); undecodable bytes become U+FFFD instead of an exception.
    frame = pd.read_csv(path, na_values=["N/A"], keep_default_na=True, dtype={"Type": str, "Name": str},
                        encoding_errors="replace", engine="python")
    present = {src: dst for src, dst in columns.items() if src in frame.columns}
    return frame[list(present)].rename(columns=present)


def read_stats(path: Path) -> pd.DataFrame:
    """One row per endpoint plus the `Aggregated` row."""
    frame = _read(path, STATS_COLUMNS)
    frame["method"] = frame["method"].fillna("")
    return frame


def read_history(path: Path) -> pd.DataFrame:
    """Rows of the `Aggregated` series over time, `seconds` counted from the first row."""
    frame = _read(path, HISTORY_COLUMNS)
    frame = frame[frame["name"] == "Aggregated"].copy()
    if not frame.empty:
        frame["seconds"] = frame["timestamp"] - frame["timestamp"].iloc[0]
    return frame


def read_failures(path: Path) -> pd.DataFrame:
    """Method, Name, Error, Occurrences: the same in both Locust layouts."""
    if not path.exists():
        return pd.DataFrame(columns=["method", "name", "error", "occurrences"])
    return _read(path, {"Method": "method", "Name": "name", "Error": "error", "Occurrences": "occurrences"})


@dataclass
class Scenario:
    name: str
    endpoints: pd.DataFrame  # rows of read_stats without Aggregated
    aggregated: dict
    history: pd.DataFrame
    failures: pd.DataFrame

    def endpoint(self, name: str) -> dict | None:
        rows = self.endpoints[self.endpoints["name"] == name]
        return None if rows.empty else rows.iloc[0].to_dict()


@dataclass
class SweepConfiguration:
    name: str
    title: str
    steps: list[plan.Step]  # every step in the order run (repeats included)
    knee: plan.Knee
    ceiling: dict | None
    settings: dict  # the rest of sweep.json's entry (flags, transport, ...)

    @property
    def final(self) -> list[plan.Step]:
        """The last attempt at each offered rate, by rate: the curve."""
        return list(plan.final_steps(self.steps).values())

    def at_rate(self, rps: float) -> plan.Step | None:
        return plan.final_steps(self.steps).get(rps)

    def cpu_at_knee(self) -> dict[str, float | None]:
        step = self.knee.step
        return {p: step.cpu_us_per_request(p) if step else None for p in (*PROCESSES, "generator")}


@dataclass
class Sweep:
    configurations: list[SweepConfiguration]
    skipped: list[dict]
    raw: dict  # sweep.json

    @property
    def bound_ms(self) -> float:
        return self.raw.get("policy", {}).get("p99_bound_us", 0) / 1000

    @property
    def start_rps(self) -> float | None:
        return self.raw.get("policy", {}).get("start_rps")

    def get(self, name: str) -> SweepConfiguration | None:
        return next((c for c in self.configurations if c.name == name), None)


def load_sweep(path: Path) -> Sweep | None:
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    configurations = []
    for entry in raw.get("configurations", []):
        steps = [plan.Step.from_dict(s) for s in entry.get("steps", [])]
        settings = {k: v for k, v in entry.items() if k not in ("steps", "knee", "ceiling", "name", "title")}
        configurations.append(SweepConfiguration(entry["name"], entry.get("title", entry["name"]), steps,
                                                 plan.find_knee(steps), entry.get("ceiling"), settings))
    return Sweep(configurations, raw.get("skipped", []), raw)


@dataclass
class Run:
    path: Path
    scenarios: list[Scenario]
    meta: dict = field(default_factory=dict)
    sweep: Sweep | None = None
    timeline: pd.DataFrame = field(default_factory=pd.DataFrame)  # timeline.csv (cluster runs)
    answers: pd.DataFrame = field(default_factory=pd.DataFrame)  # answers.csv (cluster runs)

    def scenario(self, name: str) -> Scenario | None:
        return next((s for s in self.scenarios if s.name == name), None)

    @property
    def on_cluster(self) -> bool:
        """Made by the cluster job (`scripts/run.sh --cluster`)."""
        return bool(self.meta.get("cluster")) or not self.timeline.empty

    def phases(self) -> list[str]:
        """The scenarios the timeline covers, in the run's order."""
        if self.timeline.empty:
            return []
        present = set(self.timeline["phase"])
        return [s.name for s in self.scenarios if s.name in present]


def load_run(run_dir: Path | str) -> Run:
    path = Path(run_dir)
    stats_files = sorted(path.glob("*_stats.csv"))
    sweep = load_sweep(path / "sweep.json")
    if not stats_files and sweep is None:
        raise FileNotFoundError(f"no Locust *_stats.csv files and no sweep.json in {path}")
    names = [f.name[: -len("_stats.csv")] for f in stats_files]
    names.sort(key=lambda n: (SCENARIO_ORDER.index(n) if n in SCENARIO_ORDER else len(SCENARIO_ORDER), n))
    scenarios = []
    for name in names:
        stats = read_stats(path / f"{name}_stats.csv")
        aggregated = stats[stats["name"] == "Aggregated"]
        history_file = path / f"{name}_stats_history.csv"
        scenarios.append(Scenario(
            name=name,
            endpoints=stats[stats["name"] != "Aggregated"].reset_index(drop=True),
            aggregated=aggregated.iloc[0].to_dict() if not aggregated.empty else {},
            history=read_history(history_file) if history_file.exists() else pd.DataFrame(),
            failures=read_failures(path / f"{name}_failures.csv"),
        ))
    meta = json.loads((path / "run.json").read_text()) if (path / "run.json").exists() else {}
    timeline = pd.read_csv(path / "timeline.csv") if (path / "timeline.csv").exists() else pd.DataFrame()
    answers = pd.read_csv(path / "answers.csv") if (path / "answers.csv").exists() else pd.DataFrame()
    return Run(path, scenarios, meta, sweep, timeline, answers)


# ---------------------------------------------------------------- numbers

@dataclass
class Ratios:
    rps: float | None
    p50: float | None
    p99: float | None


def _ratio(a, b) -> float | None:
    if a is None or b is None or any(isinstance(v, float) and math.isnan(v) for v in (a, b)) or b == 0:
        return None
    return float(a) / float(b)


def model_over_native(run: Run) -> Ratios:
    """The model endpoint in the `model` scenario against the native one in `native`."""
    native = run.scenario("native").endpoint(NATIVE_ENDPOINT) if run.scenario("native") else None
    model = run.scenario("model").endpoint(MODEL_ENDPOINT) if run.scenario("model") else None
    if not native or not model:
        return Ratios(None, None, None)
    return Ratios(_ratio(model.get("rps"), native.get("rps")), _ratio(model.get("p50_ms"), native.get("p50_ms")),
                  _ratio(model.get("p99_ms"), native.get("p99_ms")))


def _fmt(value, digits: int = 0, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def _fmt_ratio(value: float | None, prefix: str = "") -> str:
    return "-" if value is None else f"{prefix}{value:.2f}x" if value >= 0.01 else f"{prefix}{value:.4f}x"


def fmt_us(value: float | None) -> str:
    """Microseconds with a unit that keeps 2-3 significant digits: 85 us, 1.25 ms, 12.3 ms, 2.1 s."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if round(value) < 1000:
        return f"{value:.0f} us"
    if round(value, -1) < 10_000:
        return f"{value / 1e3:.2f} ms"
    if round(value, -2) < 1_000_000:
        return f"{value / 1e3:.1f} ms"
    return f"{value / 1e6:.2f} s"


def knee_text(c: SweepConfiguration) -> str:
    if c.knee.rps is None:
        return "none"
    return ("\u2265 " if c.knee.lower_bound else "") + _fmt(c.knee.rps)


def limit_text(c: SweepConfiguration) -> str:
    """What ended the configuration's sweep, with the rate."""
    final = c.final
    above = [s for s in final if c.knee.rps is None or s.offered_rps > c.knee.rps]
    if not above:
        return f"{plan.NOT_REACHED} (stopped at {_fmt(final[-1].offered_rps) if final else '-'} req/s)"
    return f"{plan.VERDICTS.get(above[0].verdict, above[0].verdict)} at {_fmt(above[0].offered_rps)} req/s"


def bounded_ratio(a: float | None, a_lower: bool, b: float | None, b_lower: bool) -> str:
    """a / b where either may be only a lower bound (a knee the sweep could not find the top of)."""
    value = _ratio(a, b)
    if value is None:
        return "-"
    if a_lower and b_lower:
        return _fmt_ratio(value) + " (both lower bounds)"
    return _fmt_ratio(value, "\u2265 " if a_lower else "\u2264 " if b_lower else "")


def total_cpu(c: SweepConfiguration) -> float | None:
    values = [v for p, v in c.cpu_at_knee().items() if p in PROCESSES]
    return None if c.knee.step is None or any(v is None for v in values) else sum(values)


# ---------------------------------------------------------------- the cluster's timeline

ANSWER_KEYS = ["phase", "t_s", "time", "pod", "app_id"]


def replica_totals(answers: pd.DataFrame) -> pd.DataFrame:
    """answers.csv summed over routes: one row per sample and replica (phase, t_s, time, pod,
    app_id, answers: its cumulative count), by time."""
    if answers.empty:
        return pd.DataFrame(columns=[*ANSWER_KEYS, "answers"])
    return (answers.groupby(ANSWER_KEYS, as_index=False, sort=False)["answers"].sum()
            .sort_values(["time", "pod"], kind="stable").reset_index(drop=True))


def phase_start(run: Run, phase: str) -> float | None:
    """Unix time of a scenario's first timeline sample (taken just before its Locust release)."""
    rows = run.timeline[run.timeline["phase"] == phase] if not run.timeline.empty else run.timeline
    return float(rows["time"].min()) if not rows.empty else None


def answer_shares(run: Run) -> pd.DataFrame:
    """Per scenario and service replica: the answers it gave during the scenario, and its share.
    A replica's count is its counter's last value in the scenario's samples minus its last value
    in any earlier sample (0 for a replica that started during the scenario). Replicas in the
    order they first appeared. Columns: phase, pod, app_id, answers, share (0-1)."""
    totals = replica_totals(run.answers)
    rows = []
    for phase in run.phases():
        inside = totals[totals["phase"] == phase]
        if inside.empty:
            continue
        before = totals[totals["time"] < inside["time"].min()]
        counts = {}
        for (pod, app_id), samples in inside.groupby(["pod", "app_id"], sort=False):
            prior = before[(before["pod"] == pod) & (before["app_id"] == app_id)]
            base = int(prior["answers"].iloc[-1]) if not prior.empty else 0
            counts[(pod, app_id)] = (samples["time"].min(), int(samples["answers"].iloc[-1]) - base)
        total = sum(n for _, n in counts.values())
        for (pod, app_id), (_, n) in sorted(counts.items(), key=lambda kv: (kv[1][0], kv[0])):
            rows.append({"phase": phase, "pod": pod, "app_id": app_id, "answers": n,
                         "share": n / total if total else None})
    return pd.DataFrame(rows, columns=["phase", "pod", "app_id", "answers", "share"])


def replica_rates(run: Run, phase: str) -> list[tuple[str, pd.DataFrame]]:
    """Per replica (by app_id) during a scenario: answers per second between consecutive
    samples, at `seconds` since the scenario's start."""
    totals = replica_totals(run.answers)
    start = phase_start(run, phase)
    inside = totals[totals["phase"] == phase]
    series = []
    for app_id, samples in inside.groupby("app_id", sort=False):
        samples = samples.sort_values("time")
        dt = samples["time"].diff()
        rate = samples["answers"].diff() / dt
        frame = pd.DataFrame({"seconds": samples["time"] - start, "rps": rate}).iloc[1:]
        series.append((str(app_id), frame[dt.iloc[1:] > 0]))
    return series


def replica_colors(run: Run) -> dict[str, str]:
    """One colour per replica (app_id) for every chart, in the order replicas first appeared;
    C0 and C1 stay for the Deployments."""
    order = list(dict.fromkeys(replica_totals(run.answers)["app_id"]))
    return {str(app_id): f"C{2 + i % 8}" for i, app_id in enumerate(order)}


def locust_rate(history: pd.DataFrame, window: int = WORKER_REPORT_S) -> pd.DataFrame:
    """Locust's requests per second from its running request total, over `window` seconds
    (`timestamp`, `rps`). In a distributed run the master's own `Requests/s` column lags: it
    only knows of requests once a worker reported them, every 3 s; the total does not lag."""
    if history.empty or "total_requests" not in history:
        return pd.DataFrame(columns=["timestamp", "rps"])
    rows = history.sort_values("timestamp")
    rate = rows["total_requests"].diff(window) / rows["timestamp"].diff(window)
    return pd.DataFrame({"timestamp": rows["timestamp"], "rps": rate}).dropna()


def locust_cores(run: Run, scenario: str) -> float | None:
    """Cluster runs: the most CPU (cores) the scenario's Locust pods (its release's Jobs, master
    and workers) used in one sample, from timeline.csv, counting only samples in which the
    metrics API had a figure for every one of those Jobs (a sample with the master alone would
    understate it); None without such a sample."""
    if run.timeline.empty:
        return None
    rows = run.timeline[(run.timeline["phase"] == scenario) & (run.timeline["kind"] == "Job")
                        & run.timeline["name"].astype(str).str.startswith(f"locust-{scenario}-")]
    jobs = rows["name"].nunique()
    measured = rows.dropna(subset=["cpu_m"]).groupby("time").agg(cpu_m=("cpu_m", "sum"), jobs=("name", "nunique"))
    complete = measured.loc[measured["jobs"] == jobs, "cpu_m"]
    return float(complete.max()) / 1000 if not complete.empty else None


def deployments(run: Run) -> list[str]:
    if run.timeline.empty:
        return []
    return sorted(set(run.timeline.loc[run.timeline["kind"] == "Deployment", "name"]))


def _utilisation(rows: pd.DataFrame) -> pd.Series:
    return 100.0 * rows["cpu_m"] / rows["cpu_request_m"]


def scaling_summary(run: Run) -> list[dict]:
    """Per scenario and Deployment, from the timeline: pods at the start, the most pods and when
    first reached (s since the start), pods at the end, the highest CPU utilisation the HPA
    reported, the mean and highest utilisation computed from the metrics API (usage / request),
    and the node's busiest moment (usage / allocatable)."""
    out = []
    for phase in run.phases():
        rows = run.timeline[run.timeline["phase"] == phase]
        start = phase_start(run, phase)
        node = rows[rows["kind"] == "Node"]
        node_max = _utilisation(node).max() if not node.empty else None
        for name in deployments(run):
            d = rows[(rows["kind"] == "Deployment") & (rows["name"] == name)].sort_values("time")
            if d.empty:
                continue
            most = int(d["pods"].max())
            util = _utilisation(d).dropna()
            hpa = d["hpa_utilisation_pct"].dropna()
            out.append({
                "phase": phase, "deployment": name, "pods_start": int(d["pods"].iloc[0]), "pods_max": most,
                "max_at_s": float(d.loc[d["pods"] == most, "time"].iloc[0] - start),
                "pods_end": int(d["pods"].iloc[-1]), "has_hpa": bool(d["hpa_target_pct"].notna().any()),
                "hpa_target_pct": d["hpa_target_pct"].dropna().iloc[0] if d["hpa_target_pct"].notna().any() else None,
                "hpa_max_pct": float(hpa.max()) if not hpa.empty else None,
                "util_mean_pct": float(util.mean()) if not util.empty else None,
                "util_max_pct": float(util.max()) if not util.empty else None,
                "node_max_pct": None if node_max is None or math.isnan(node_max) else float(node_max)})
    return out


# ---------------------------------------------------------------- sections

Section = Callable[["Run", set], list]


def section_title(run: Run, charts: set) -> list[str]:
    return [f"# celsius load test: {md_text(run.path.name)}", ""]


def section_run(run: Run, charts: set) -> list[str]:
    if not run.meta:
        return []
    lines = ["## Run", ""]
    for key, value in run.meta.items():
        shown = json.dumps(value) if isinstance(value, (dict, list)) else value
        lines.append(f"- **{md_text(key)}**: {md_text(shown, limit=2000)}")
    return lines + [""]


def section_sweep(run: Run, charts: set) -> list[str]:
    sw = run.sweep
    if sw is None:
        return []
    raw = sw.raw
    gen = raw.get("generator", {})
    placement = raw.get("placement")
    where = (f"the service alone on CPU {placement['service']} (one event loop), the model server on CPU "
             f"{placement['model_server']}, the load generator beside it on CPU {placement['generator']}"
             if placement else "not pinned (fewer than 2 CPUs or no taskset)")
    lines = ["## Capacity sweep", "",
             f"Each configuration gets an open-loop load at fixed request rates (vegeta {md_text(gen.get('version'))}, "
             f"{md_text(gen.get('workers'))} workers, body {md_code(raw.get('body'))}), "
             f"{md_text(raw.get('step_seconds'))} s per step, starting at {_fmt(sw.start_rps)} req/s and doubling "
             f"until a step is out of bounds (p99 above **{sw.bound_ms:g} ms**, any error, or less served than "
             "offered), then bisecting to within 10 %. A step out of bounds on latency alone is repeated once. "
             "Latency counts from each request's intended send time, so queueing in front of the system is "
             f"not hidden (coordinated omission); the first {md_text(raw.get('warmup_s'))} s of each step is "
             f"left out of the percentiles. Placement: {where}. Model server: {md_text(raw.get('model_server'))}.",
             "",
             f"The **knee** is the highest offered rate with p99 \u2264 {sw.bound_ms:g} ms, no errors, and the "
             "rate served; \u2265 marks a knee that is only a lower bound (the load generator, not the "
             "system, ran out first, or the sweep stopped before anything was out of bounds).", ""]
    if sw.configurations:
        rows = []
        for c in sw.configurations:
            k = c.knee.step
            rows.append([c.title, knee_text(c), limit_text(c), fmt_us(k.p50_us if k else None),
                         fmt_us(k.p99_us if k else None), fmt_us(k.p999_us if k else None),
                         _fmt(c.ceiling.get("rps")) if c.ceiling else "-", len(c.steps)])
        lines += md_table(["configuration", "knee (req/s)", "what ends it", "p50 at knee", "p99 at knee",
                           "p99.9 at knee", "closed-loop max, wrk (req/s)", "steps"], rows, "lrlrrrrr")
        lines.append("")
        if "sweep_latency.png" in charts:
            lines += ["![throughput against latency, per configuration](sweep_latency.png)", ""]
    flagged = [c for c in sw.configurations if c.settings.get("model_server_flags")
               or len(c.settings.get("service_flags", [])) > 2]
    if flagged:
        lines += ["Flags of the batching configurations:", ""]
        for c in flagged:
            parts = []
            if c.settings.get("model_server_flags"):
                params = " ".join((c.settings.get("batching_parameters") or "").split())
                parts.append(f"model server {md_code(' '.join(c.settings['model_server_flags']))} "
                             f"({md_code(params)})")
            if len(c.settings.get("service_flags", [])) > 2:
                parts.append(f"service {md_code(' '.join(c.settings['service_flags']))}")
            lines.append(f"- {md_text(c.title)}: {'; '.join(parts)}")
        lines.append("")
    if sw.skipped:
        lines += ["Not measured in this run:", ""]
        lines += [f"- **{md_text(s.get('title', s.get('name')))}**: {md_text(s.get('reason'), limit=600)}"
                  for s in sw.skipped]
        lines.append("")
    return lines


def section_ratios(run: Run, charts: set) -> list[str]:
    sw = run.sweep
    native = sw.get("native") if sw else None
    if native is None or len(sw.configurations) < 2:
        return []
    start = sw.start_rps
    base = native.at_rate(start) if start else None
    lines = ["## Against native", "",
             f"Each configuration over native: knee rate, latency at the same light load ({_fmt(start)} req/s, the "
             "first step of every configuration), and CPU per request (service + model server) at the knee.", ""]
    rows = []
    for c in sw.configurations:
        if c is native:
            continue
        light = c.at_rate(start) if start else None
        rows.append([c.title, bounded_ratio(c.knee.rps, c.knee.lower_bound, native.knee.rps, native.knee.lower_bound),
                     _fmt_ratio(_ratio(light.p50_us if light else None, base.p50_us if base else None)),
                     _fmt_ratio(_ratio(light.p99_us if light else None, base.p99_us if base else None)),
                     _fmt_ratio(_ratio(total_cpu(c), total_cpu(native)))])
    lines += md_table(["configuration", "knee", f"p50 at {_fmt(start)} req/s", f"p99 at {_fmt(start)} req/s",
                       "CPU per request"], rows)
    return lines + [""]


def section_cpu(run: Run, charts: set) -> list[str]:
    """CPU per request at each knee, per process, and what the figures say."""
    sw = run.sweep
    if sw is None or not sw.configurations:
        return []
    lines = ["## Where the time goes", "",
             "CPU per request at each configuration's knee, from the processes' own counters (utime + stime of "
             "every thread, /proc/<pid>/stat; the generator's from its rusage), divided by the requests of that "
             "step; \"cores\" is CPU seconds per second of the step (1.00 = one CPU kept busy).", ""]
    tick = sw.raw.get("cpu_tick_s", 0.01)
    rows = []
    for c in sw.configurations:
        k, cpu = c.knee.step, c.cpu_at_knee()
        rows.append([c.title, _fmt(k.offered_rps) if k else "-", fmt_us(cpu["service"]),
                     _fmt(k.cores("service"), 2) if k else "-", fmt_us(cpu["model_server"]),
                     _fmt(k.cores("model_server"), 2) if k else "-", fmt_us(total_cpu(c)),
                     "\u00b1 " + fmt_us(tick * 1e6 / k.requests) if k and k.requests else "-", fmt_us(cpu["generator"])])
    lines += md_table(["configuration", "at (req/s)", "service CPU/request", "service cores",
                       "model server CPU/request", "model server cores", "total", "resolution",
                       "load generator CPU/request"], rows)
    lines += ["", f"(Resolution: the counters tick every {tick * 1000:g} ms of CPU, so each figure is within one "
              "tick divided by the step's requests.)"]
    lines.append("")
    if "cpu_per_request.png" in charts:
        lines += ["![CPU per request at the knee, per process](cpu_per_request.png)", ""]
    native = sw.get("native")
    native_cpu = total_cpu(native) if native else None
    for c in sw.configurations:
        k = c.knee.step
        total = total_cpu(c)
        if k is None or total is None or not total:
            continue
        cpu = c.cpu_at_knee()
        busiest = max(PROCESSES, key=lambda p: k.cores(p) or 0)
        text = (f"- {md_text(c.title)}: {fmt_us(total)} of CPU per request at {_fmt(k.offered_rps)} req/s, "
                f"{100 * cpu['model_server'] / total:.0f} % of it in the model server and "
                f"{100 * cpu['service'] / total:.0f} % in the service")
        if native_cpu and c is not native:
            text += f"; {_fmt_ratio(total / native_cpu)} native's {fmt_us(native_cpu)}"
        text += (f". The busiest process was the {PROCESSES[busiest]} at {k.cores(busiest) or 0:.2f} cores; "
                 f"above the knee: {md_text(limit_text(c))}.")
        lines.append(text)
    return lines + [""]


def section_sweep_steps(run: Run, charts: set) -> list[str]:
    sw = run.sweep
    if sw is None or not sw.configurations:
        return []
    lines = ["## Every step", "",
             "In the order run (a repeated rate is marked); CPU per request of each process over the whole step.", ""]
    rows = []
    for c in sw.configurations:
        seen: set[float] = set()
        for st in c.steps:
            rows.append([c.name, _fmt(st.offered_rps) + (" (repeat)" if st.offered_rps in seen else ""),
                         _fmt(st.achieved_rps), fmt_us(st.p50_us), fmt_us(st.p90_us), fmt_us(st.p99_us),
                         fmt_us(st.p999_us), _fmt(st.errors), fmt_us(st.cpu_us_per_request("service")),
                         fmt_us(st.cpu_us_per_request("model_server")), _fmt(st.generator_cores, 2),
                         fmt_us(st.send_lag_p99_us), st.verdict])
            seen.add(st.offered_rps)
    lines += md_table(["configuration", "offered req/s", "served req/s", "p50", "p90", "p99", "p99.9", "errors",
                       "service CPU/req", "model server CPU/req", "generator cores", "send lag p99", "verdict"],
                      rows, "lrrrrrrrrrrrl")
    return lines + ["", "The same figures, one row per step: `sweep.csv`; everything: `sweep.json`.", ""]


def section_sweep_errors(run: Run, charts: set) -> list[str]:
    sw = run.sweep
    if sw is None:
        return []
    rows = [[c.name, _fmt(st.offered_rps), message, _fmt(count)]
            for c in sw.configurations for st in c.steps for message, count in st.errors_by_message.items()]
    if not rows:
        return []
    return ["## Errors in the sweep", ""] + md_table(["configuration", "offered req/s", "error", "count"], rows,
                                                     "lrlr") + [""]


def section_locust(run: Run, charts: set) -> list[str]:
    if not run.scenarios:
        return []
    lines = ["## Locust scenarios", "",
             "Latencies in milliseconds as Locust reports them: its percentiles are rounded (whole ms below 100 ms, "
             "coarser above). Numbers come from Locust's `_stats.csv` files (the console summary agrees with them: "
             "the locustfile lets Locust's CSV writer make a last pass at exit).", ""]
    rows = []
    for s in run.scenarios:
        for r in s.endpoints.to_dict("records") or [{"name": "(no requests)"}]:
            rows.append([s.name, f"{r.get('method', '')} {r['name']}".strip(), _fmt(r.get("requests")),
                         _fmt(r.get("failures")), _fmt(r.get("rps"), 1), _fmt(r.get("p50_ms")), _fmt(r.get("p95_ms")),
                         _fmt(r.get("p99_ms")), _fmt(r.get("max_ms"))])
    lines += md_table(["scenario", "endpoint", "requests", "failures", "req/s", "p50", "p95", "p99", "max"], rows,
                      "llrrrrrrr")
    lines.append("")
    ratios = model_over_native(run)
    lines += [f"`{MODEL_ENDPOINT}` in the `model` scenario over `{NATIVE_ENDPOINT}` in the `native` scenario "
              "(same users, spawn rate and duration):", ""]
    lines += md_table(["req/s", "p50", "p99"], [[_fmt_ratio(ratios.rps), _fmt_ratio(ratios.p50),
                                                  _fmt_ratio(ratios.p99)]], "rrr")
    lines.append("")
    lines += [f"![{c[:-4]}]({c})" for c in ("latency_percentiles.png", "over_time.png") if c in charts]
    return lines + [""]


def section_locust_limits(run: Run, charts: set) -> list[str]:
    """What Locust can and cannot measure here, from this run's own figures."""
    if not run.scenarios:
        return []
    cpu = run.meta.get("locust_cpu") if isinstance(run.meta.get("locust_cpu"), dict) else {}
    sw = run.sweep
    lines = ["## What Locust can and cannot measure here", ""]
    for scenario, endpoint, config in (("native", NATIVE_ENDPOINT, "native"), ("model", MODEL_ENDPOINT, "model-grpc")):
        s = run.scenario(scenario)
        r = s.endpoint(endpoint) if s else None
        if not r or not r.get("requests"):
            continue
        figures = cpu.get(scenario) or {}
        c = sw.get(config) if sw else None
        text = f"- `{scenario}`: Locust drove {_fmt(r.get('rps'))} req/s on `{endpoint}`"
        if figures.get("wall_s") and figures.get("locust_cpu_s") is not None:
            locust_us = figures["locust_cpu_s"] * 1e6 / r["requests"]
            text += (f" and used {figures['locust_cpu_s'] / figures['wall_s']:.2f} CPU cores for it "
                     f"({fmt_us(locust_us)} of Locust CPU per request")
            if figures.get("service_cpu_s") is not None:
                text += f", against {fmt_us(figures['service_cpu_s'] * 1e6 / r['requests'])} in the service"
            if scenario == "model" and figures.get("model_server_cpu_s") is not None:
                text += f" and {fmt_us(figures['model_server_cpu_s'] * 1e6 / r['requests'])} in the model server"
            text += ")"
        cores = locust_cores(run, scenario)
        if cores is not None:
            text += f"; its pods (master and workers) used at most {cores:.2f} CPU cores (metrics API)"
        if c and c.knee.rps:
            # Over a knee that is only a lower bound, the ratio is only an upper bound.
            text += (f"; that is {bounded_ratio(r.get('rps'), False, c.knee.rps, c.knee.lower_bound)} the sweep's knee for "
                     f"{md_text(c.title)}, {knee_text(c)} req/s")
        if c and c.ceiling and c.ceiling.get("rps"):
            text += (f"; {_fmt_ratio(_ratio(r.get('rps'), c.ceiling['rps']))} wrk's closed-loop maximum, "
                     f"{_fmt(c.ceiling['rps'])} req/s")
        text += "."
        if c:
            near = min(c.final, key=lambda st: abs(math.log(st.offered_rps / r["rps"])) if r.get("rps") else 0,
                       default=None)
            if near and near.p50_us is not None:
                text += (f" Locust reports p50 {_fmt(r.get('p50_ms'))} ms and p99 {_fmt(r.get('p99_ms'))} ms; at "
                         f"{_fmt(near.offered_rps)} req/s offered at a fixed rate the sweep measured p50 "
                         f"{fmt_us(near.p50_us)} and p99 {fmt_us(near.p99_us)}.")
        lines.append(text)
    lines += [
        "- Locust's users are a closed loop: each waits for its answer before it sends again, so its rate is "
        "whatever the slowest part allows, and when the system slows down Locust sends less instead of "
        "queueing (coordinated omission). Where Locust's own CPU is the limit, it measures Locust; its "
        "latencies include time spent in its own event loop, and its percentiles are whole milliseconds, "
        "coarser than a native answer. It is the right tool for what users do (tasks, checked answers, "
        "a mix of endpoints); the sweep is the tool for capacity and latency under a given load.",
        ""]
    return lines


def section_failures(run: Run, charts: set) -> list[str]:
    if not run.scenarios:
        return []
    failures = [f for s in run.scenarios for f in s.failures.assign(scenario=s.name).to_dict("records")]
    lines = ["## Locust failures", ""]
    if not failures:
        return lines + ["None.", ""]
    rows = [[f["scenario"], f"{f.get('method', '')} {f.get('name', '')}".strip(), f.get("error"),
             _fmt(f.get("occurrences"))] for f in failures]
    return lines + md_table(["scenario", "endpoint", "error", "occurrences"], rows, "lllr") + [""]


def _short(app_id) -> str:
    return str(app_id)[:8]


def section_cluster(run: Run, charts: set) -> list[str]:
    """Where a cluster run ran, and which parts of the local job it has not."""
    if not run.on_cluster:
        return []
    c = run.meta.get("cluster") or {}
    nodes = c.get("nodes") or []
    node_text = "; ".join(f"{md_text(n.get('name'))}: {md_text(n.get('cpu'))} CPUs, {md_text(n.get('memory'))}, "
                          f"kubelet {md_text(n.get('kubelet'))}, {md_text(n.get('container_runtime'))}, "
                          f"{md_text(n.get('os'))}" for n in nodes) or "-"
    sets = " ".join(f"--set {s}" for s in c.get("celsius_sets") or [])
    lines = ["## On a Kubernetes cluster", "",
             f"Made by {md_code(run.meta.get('command') or 'scripts/run.sh --cluster')} on Kubernetes "
             f"{md_text(c.get('kubernetes_server'))} ({len(nodes)} node{'s' if len(nodes) != 1 else ''}: "
             f"{node_text}; metrics API from {md_text(c.get('metrics_server'))}), Helm {md_text(c.get('helm'))}. "
             "The celsius chart with its defaults"
             + (f" apart from {md_code(sets)}" if sets else "") +
             f"; each scenario a headless release of the locust chart (master + {md_text(c.get('locust_workers'))} "
             "workers, Jobs) loading the release's Service from inside the cluster. Locust, the service and the "
             "model server share the cluster's CPUs"
             + (f"; the job itself (kubectl, Helm, the timeline's reads) used {c['job_cpu_s']:,.0f} CPU seconds "
                f"in {_fmt(run.meta.get('elapsed_s'))} s" if c.get("job_cpu_s") is not None else "") + ".", ""]
    for h in c.get("hpas") or []:
        behavior = "Kubernetes' defaults" if not h.get("behavior") else md_code(json.dumps(h["behavior"]))
        lines.append(f"- HPA {md_text(h.get('name'))} on {md_text(h.get('target'))}: {md_text(h.get('min_replicas'))}"
                     f"-{md_text(h.get('max_replicas'))} replicas at {md_text(h.get('cpu_target_pct'))} % CPU "
                     f"(utilisation = usage / request), behavior: {behavior}")
    if c.get("hpas"):
        lines.append("")
    lines += ["**Not in a cluster run**: the capacity sweep (vegeta's open-loop steps with CPU per request "
              "from /proc) and wrk's closed-loop ceilings, which need the service and the model server as local "
              "processes pinned to CPUs, and Locust's own CPU by rusage. The local job (`scripts/run.sh`) "
              "measures them; their sections are absent here.", ""]
    return lines


def section_autoscaling(run: Run, charts: set) -> list[str]:
    """Replicas and CPU utilisation per Deployment during each scenario, from timeline.csv."""
    summary = scaling_summary(run)
    if not summary:
        return []
    every = (run.meta.get("cluster") or {}).get("sample_seconds")
    lines = ["## Replicas and CPU under load", "",
             f"From `timeline.csv`: every {md_text(every)} s, each Deployment's pods and CPU (metrics API) and what "
             "its HPA reported. Utilisation is CPU usage over CPU requests: \"HPA\" is the HPA's own figure "
             "(it leaves out pods that are not yet ready, and the metrics API refreshes every 15 s), "
             "\"computed\" the same ratio over every pod with metrics; the node's figure is its usage over its "
             "allocatable CPU. Times in seconds from the scenario's start (its Locust release installed).", ""]
    rows = [[r["phase"], r["deployment"], _fmt(r["pods_start"]), f"{r['pods_max']} (at {r['max_at_s']:.0f} s)",
             _fmt(r["pods_end"]), _fmt(r["hpa_target_pct"], suffix=" %") if r["has_hpa"] else "no HPA",
             _fmt(r["hpa_max_pct"], suffix=" %"), _fmt(r["util_mean_pct"], suffix=" %"),
             _fmt(r["util_max_pct"], suffix=" %"), _fmt(r["node_max_pct"], suffix=" %")] for r in summary]
    lines += md_table(["scenario", "Deployment", "pods at start", "most pods", "pods at end", "HPA target",
                       "HPA utilisation, highest", "computed, mean", "computed, highest", "node CPU, highest"],
                      rows, "llrrrrrrrr")
    lines.append("")
    for r in summary:
        if not r["has_hpa"]:
            continue
        name = md_text(r["deployment"])
        if r["pods_max"] > r["pods_start"]:
            text = (f"the HPA scaled {name} out from {r['pods_start']} to {r['pods_max']} replicas "
                    f"({r['max_at_s']:.0f} s after the start)")
            if r["pods_end"] < r["pods_max"]:
                text += f", and in to {r['pods_end']} by the end"
        elif r["pods_end"] < r["pods_start"]:
            text = f"the HPA scaled {name} in from {r['pods_start']} to {r['pods_end']} replicas"
        else:
            text = f"{name} stayed at {r['pods_start']} replica{'s' if r['pods_start'] != 1 else ''}"
        peak = r["hpa_max_pct"]
        lines.append(f"- `{md_text(r['phase'])}`: {text}; its HPA saw at most {_fmt(peak, suffix=' %')} against "
                     f"a target of {_fmt(r['hpa_target_pct'], suffix=' %')}.")
    lines.append("")
    if "cluster_timeline.png" in charts:
        lines += ["![throughput, replicas and CPU utilisation over time, per scenario](cluster_timeline.png)", ""]
    return lines


def section_answer_spread(run: Run, charts: set) -> list[str]:
    """The answers of each scenario over the service's replicas (answers.csv)."""
    shares = answer_shares(run)
    if shares.empty:
        return []
    lines = ["## Answers per replica", "",
             "Which replica answered how much of each scenario: each replica's own request counters "
             "(`celsius_http_requests_total`, routes `/convert` and `/convert/model`, every status) read from its "
             "`/metrics` with every timeline sample, the difference over the scenario; the replica is named by "
             "its pod and its `app_id` (the `app_id` in every answer). A replica removed during a scenario keeps "
             "the count of its last sample.", ""]
    rows = []
    for r in shares.to_dict("records"):
        rows.append([r["phase"], r["pod"], r["app_id"], _fmt(r["answers"]),
                     "-" if r["share"] is None or math.isnan(r["share"]) else f"{100 * r['share']:.1f} %"])
    lines += md_table(["scenario", "replica (pod)", "app_id", "answers", "share"], rows, "lllrr")
    lines.append("")
    for phase in shares["phase"].unique():
        counted = int(shares.loc[shares["phase"] == phase, "answers"].sum())
        s = run.scenario(phase)
        locust = s.aggregated.get("requests") if s else None
        replicas = int((shares.loc[shares["phase"] == phase, "answers"] > 0).sum())
        lines.append(f"- `{md_text(phase)}`: {_fmt(counted)} answers counted by {replicas} "
                     f"replica{'s' if replicas != 1 else ''}; Locust counted {_fmt(locust)} requests.")
    lines += ["", "(The two counts differ by requests in flight when Locust stopped its users, answered but not "
              "counted by Locust, and by requests that got no answer, a refused or reset connection, counted by "
              "Locust only.)", ""]
    if "answer_spread.png" in charts:
        lines += ["![share of answers per replica, per scenario](answer_spread.png)", ""]
    return lines


def section_regenerate(run: Run, charts: set) -> list[str]:
    try:
        folder = str(run.path.resolve().relative_to(REPO))
    except ValueError:
        folder = "<this run folder>"
    return ["Regenerate this report and its charts from the files in this folder (from the repository root): "
            f"{md_code('PYTHONPATH=loadtest/src .venv/bin/python -m celsius_loadtest report ' + folder)}.", ""]


SECTIONS: list[Section] = [section_title, section_cluster, section_sweep, section_ratios, section_cpu, section_locust,
                           section_autoscaling, section_answer_spread, section_locust_limits, section_failures,
                           section_sweep_steps, section_sweep_errors, section_run, section_regenerate]


def render_markdown(run: Run, charts) -> str:
    charts = set(charts)
    lines: list[str] = []
    for section in SECTIONS:
        lines += section(run, charts)
    return scrub_paths("\n".join(lines))


# ---------------------------------------------------------------- charts

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def chart_sweep_latency(run: Run) -> str | None:
    """Throughput against latency, one line per configuration: served req/s (log) against p50
    and p99 (log), the bound, each knee circled, steps out of bounds as crosses."""
    sw = run.sweep
    if sw is None or not any(c.final for c in sw.configurations):
        return None
    plt = _pyplot()
    from matplotlib import ticker

    plain = ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, key, label in ((axes[0], "p50_us", "p50"), (axes[1], "p99_us", "p99")):
        for i, c in enumerate(sw.configurations):
            points = [(st.achieved_rps, getattr(st, key) / 1000, st.verdict == plan.OK) for st in c.final
                      if getattr(st, key) and st.achieved_rps > 0]
            if not points:
                continue
            color = f"C{i}"
            ax.plot([p[0] for p in points], [p[1] for p in points], "-", color=color, label=c.title)
            ax.plot([p[0] for p in points if p[2]], [p[1] for p in points if p[2]], "o", color=color, ms=4)
            ax.plot([p[0] for p in points if not p[2]], [p[1] for p in points if not p[2]], "x", color=color, ms=6)
            k = c.knee.step
            if k and getattr(k, key):
                ax.plot([k.achieved_rps], [getattr(k, key) / 1000], "o", ms=12, mfc="none", color=color)
        if key == "p99_us" and sw.bound_ms:
            ax.axhline(sw.bound_ms, color="grey", ls="--", lw=1)
            ax.annotate(f"bound {sw.bound_ms:g} ms", (0.01, sw.bound_ms), xycoords=("axes fraction", "data"),
                        va="bottom", fontsize=8, color="grey")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers (1,000; 0.1), not 10^3 in mathtext
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("served (req/s, log)")
        ax.set_title(f"{label} latency against throughput")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms, log)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=9)
    fig.suptitle("Capacity sweep: o within bounds, x out of bounds, circled: the knee", fontsize=10)
    fig.tight_layout(rect=(0, 0.07 * math.ceil(len(labels) / 3), 1, 1))
    fig.savefig(run.path / "sweep_latency.png", dpi=110)
    plt.close(fig)
    return "sweep_latency.png"


def chart_cpu_per_request(run: Run) -> str | None:
    """CPU per request at the knee, a bar per configuration stacked by process, values written on."""
    sw = run.sweep
    bars = [c for c in sw.configurations if c.knee.step] if sw else []
    if not bars:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.9 * len(bars)), 4.5))
    bottoms = [0.0] * len(bars)
    for i, (process, label) in enumerate(PROCESSES.items()):
        values = [c.cpu_at_knee()[process] or 0.0 for c in bars]
        ax.bar(range(len(bars)), values, 0.6, bottom=bottoms, label=label, color=f"C{i}")
        bottoms = [b + v for b, v in zip(bottoms, values)]
    for x, (c, top) in enumerate(zip(bars, bottoms)):
        ax.annotate(f"{top:,.0f} us\nat {c.knee.rps:,.0f} req/s", (x, top), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(bars)), [c.title.replace(", ", ",\n", 1) for c in bars], fontsize=8)
    ax.set_ylabel("CPU per request (us)")
    ax.set_ylim(0, max(bottoms) * 1.25 or 1)
    ax.set_title("CPU per request at the knee, by process")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run.path / "cpu_per_request.png", dpi=110)
    plt.close(fig)
    return "cpu_per_request.png"


def chart_latency_percentiles(run: Run) -> str | None:
    bars = [(f"{s.name}\n{r['name']}", r) for s in run.scenarios for r in s.endpoints.to_dict("records")
            if r.get("requests")]
    if not bars:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(bars)), 4))
    width = 0.25
    for i, (key, label) in enumerate((("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99"))):
        ax.bar([x + (i - 1) * width for x in range(len(bars))], [r.get(key, float("nan")) for _, r in bars],
               width, label=label)
    ax.set_xticks(range(len(bars)), [name for name, _ in bars])
    ax.set_ylabel("latency (ms)")
    ax.set_title("Locust: latency percentiles per scenario and endpoint")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run.path / "latency_percentiles.png", dpi=110)
    plt.close(fig)
    return "latency_percentiles.png"


def chart_over_time(run: Run) -> str | None:
    histories = [s for s in run.scenarios if not s.history.empty]
    if not histories:
        return None
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for s in histories:
        top.plot(s.history["seconds"], s.history["rps"], label=s.name)
        bottom.plot(s.history["seconds"], s.history["p95_ms"], label=s.name)
    top.set_ylabel("req/s")
    bottom.set_ylabel("p95 latency (ms, 10 s window)")
    bottom.set_xlabel("seconds since start")
    top.set_title("Locust: throughput and latency over time")
    top.legend()
    fig.tight_layout()
    fig.savefig(run.path / "over_time.png", dpi=110)
    plt.close(fig)
    return "over_time.png"


def chart_cluster_timeline(run: Run) -> str | None:
    """Per scenario (a column): above, Locust's req/s and each service replica's answers per
    second, with the pods of each Deployment on the right axis; below, the CPU utilisation of
    each Deployment (computed: line; the HPA's figure: dots; its target: dashed) and the node's."""
    phases = run.phases()
    if not phases:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(phases), figsize=(5.2 * len(phases), 7.2), squeeze=False, sharey="row")
    names = deployments(run)
    colors = {name: f"C{i % 2}" if i < 2 else f"C{9 - i % 8}" for i, name in enumerate(names)}
    replica_color = replica_colors(run)
    top_max = 0.0
    for col, phase in enumerate(phases):
        top, bottom = axes[0][col], axes[1][col]
        start = phase_start(run, phase)
        s = run.scenario(phase)
        locust = locust_rate(s.history) if s is not None else pd.DataFrame()
        if not locust.empty and start is not None:
            top.plot(locust["timestamp"] - start, locust["rps"], color="black", lw=1.6,
                     label=f"Locust req/s ({WORKER_REPORT_S} s window)")
            top_max = max(top_max, float(locust["rps"].max()))
        for app_id, rates in replica_rates(run, phase):
            top.plot(rates["seconds"], rates["rps"], lw=1, ls="-", marker=".", ms=3, color=replica_color[app_id],
                     label=f"replica {_short(app_id)}")
            if not rates.empty:
                top_max = max(top_max, float(rates["rps"].max()))
        rows = run.timeline[run.timeline["phase"] == phase]
        pods_axis = top.twinx()
        for name in names:
            d = rows[(rows["kind"] == "Deployment") & (rows["name"] == name)].sort_values("time")
            if d.empty:
                continue
            t = d["time"] - start
            # The first Deployment's line wide and pale, the others narrow on top: equal counts stay visible.
            first = name == names[0]
            pods_axis.step(t, d["pods"], where="post", color=colors[name], ls="-" if first else "--",
                           lw=4 if first else 1.4, alpha=0.45 if first else 1, label=f"{name} pods")
            bottom.plot(t, _utilisation(d), color=colors[name], lw=1.4, label=f"{name} (computed)")
            hpa = d["hpa_utilisation_pct"].notna()
            if hpa.any():
                bottom.plot(t[hpa], d.loc[hpa, "hpa_utilisation_pct"], "o", color=colors[name], ms=4,
                            label=f"{name} (HPA)")
                target = d["hpa_target_pct"].dropna()
                if not target.empty:
                    bottom.axhline(float(target.iloc[0]), color=colors[name], ls=":", lw=1)
        node = rows[rows["kind"] == "Node"].sort_values("time")
        for name, n in node.groupby("name"):
            bottom.plot(n["time"] - start, _utilisation(n), color="grey", lw=1, ls="-.", label=f"node {name}")
        most = int(run.timeline.loc[run.timeline["kind"] == "Deployment", "pods"].max())
        pods_axis.set_ylim(0, most + 1)
        pods_axis.set_yticks(range(0, most + 2))
        if col == len(phases) - 1:
            pods_axis.set_ylabel("pods (steps)")
        top.set_title(f"{phase}")
        bottom.set_xlabel("seconds since the scenario's start")
        handles, labels = top.get_legend_handles_labels()
        more, more_labels = pods_axis.get_legend_handles_labels()
        top.legend(handles + more, labels + more_labels, fontsize=7, loc="best", framealpha=0.7)
        bottom.legend(fontsize=7, loc="best", framealpha=0.7)
        for ax in (top, bottom):
            ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("req/s (Locust) and answers/s (per replica)")
    axes[0][0].set_ylim(0, top_max * 1.25 or 1)
    axes[1][0].set_ylabel("CPU utilisation (% of request; dotted: HPA target)")
    fig.suptitle("Throughput, replicas and CPU utilisation over time", fontsize=11)
    fig.tight_layout()
    fig.savefig(run.path / "cluster_timeline.png", dpi=100)
    plt.close(fig)
    return "cluster_timeline.png"


def chart_answer_spread(run: Run) -> str | None:
    """A horizontal bar per scenario, split by the share of answers each replica gave."""
    shares = answer_shares(run)
    if shares.empty or not shares["answers"].sum():
        return None
    plt = _pyplot()
    phases = list(shares["phase"].unique())
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.8 * len(phases)))
    colors = replica_colors(run)
    for y, phase in enumerate(phases):
        left = 0.0
        for r in shares[shares["phase"] == phase].to_dict("records"):
            if not r["share"]:
                continue
            color = colors[str(r["app_id"])]
            width = 100 * r["share"]
            ax.barh(y, width, left=left, color=color, edgecolor="white")
            if width >= 6:
                ax.text(left + width / 2, y, f"{_short(r['app_id'])}\n{width:.0f} %", ha="center", va="center",
                        fontsize=7, color="white")
            left += width
    ax.set_yticks(range(len(phases)), phases)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the scenario's answers (%), one colour per replica (app_id)")
    ax.set_title("Answers per replica")
    fig.tight_layout()
    fig.savefig(run.path / "answer_spread.png", dpi=110)
    plt.close(fig)
    return "answer_spread.png"


CHARTS: list[Callable[[Run], str | None]] = [chart_sweep_latency, chart_cpu_per_request, chart_latency_percentiles,
                                             chart_over_time, chart_cluster_timeline, chart_answer_spread]


def make_charts(run: Run) -> list[str]:
    return [name for chart in CHARTS if (name := chart(run))]


def write_report(run_dir: Path | str) -> Path:
    run = load_run(run_dir)
    charts = make_charts(run)
    out = run.path / "report.md"
    out.write_text(render_markdown(run, charts), encoding="utf-8")
    return out
