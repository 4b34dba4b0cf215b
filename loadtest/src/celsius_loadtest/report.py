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
    "Failures/s": "fps", "50%": "p50_ms", "95%": "p95_ms", "99%": "p99_ms",
}


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

    def scenario(self, name: str) -> Scenario | None:
        return next((s for s in self.scenarios if s.name == name), None)


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
    return Run(path, scenarios, meta, sweep)


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
        if c and c.knee.rps:
            text += (f"; that is {_fmt_ratio(_ratio(r.get('rps'), c.knee.rps))} the sweep's knee for "
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


def section_regenerate(run: Run, charts: set) -> list[str]:
    try:
        folder = str(run.path.resolve().relative_to(REPO))
    except ValueError:
        folder = "<this run folder>"
    return ["Regenerate this report and its charts from the files in this folder (from the repository root): "
            f"{md_code('PYTHONPATH=loadtest/src .venv/bin/python -m celsius_loadtest report ' + folder)}.", ""]


SECTIONS: list[Section] = [section_title, section_sweep, section_ratios, section_cpu, section_locust,
                           section_locust_limits, section_failures, section_sweep_steps, section_sweep_errors,
                           section_run, section_regenerate]


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


CHARTS: list[Callable[[Run], str | None]] = [chart_sweep_latency, chart_cpu_per_request, chart_latency_percentiles,
                                             chart_over_time]


def make_charts(run: Run) -> list[str]:
    return [name for chart in CHARTS if (name := chart(run))]


def write_report(run_dir: Path | str) -> Path:
    run = load_run(run_dir)
    charts = make_charts(run)
    out = run.path / "report.md"
    out.write_text(render_markdown(run, charts), encoding="utf-8")
    return out
