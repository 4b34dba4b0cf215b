"""The comparison report: Locust's CSV files of one run -> report.md and charts.

Locust's columns changed across versions (the failures file gained `First Seen` and
`Last Seen` in 2.44), so every file is read by header name, and columns a version lacks
are simply absent from the report. Percentiles are whole milliseconds in Locust; for
microsecond figures the run also records wrk ceilings (ceilings.json, when present).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

SCENARIO_ORDER = ["native", "model", "mixed"]
NATIVE_ENDPOINT = "/convert"
MODEL_ENDPOINT = "/convert/model"

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


def _read(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    frame = pd.read_csv(path, na_values=["N/A"], keep_default_na=True, dtype={"Type": str, "Name": str})
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
class Run:
    path: Path
    scenarios: list[Scenario]
    meta: dict = field(default_factory=dict)
    ceilings: dict = field(default_factory=dict)


def load_run(run_dir: Path | str) -> Run:
    path = Path(run_dir)
    stats_files = sorted(path.glob("*_stats.csv"))
    if not stats_files:
        raise FileNotFoundError(f"no Locust *_stats.csv files in {path}")
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
    ceilings = json.loads((path / "ceilings.json").read_text()) if (path / "ceilings.json").exists() else {}
    return Run(path, scenarios, meta, ceilings)


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
    by_name = {s.name: s for s in run.scenarios}
    native = by_name["native"].endpoint(NATIVE_ENDPOINT) if "native" in by_name else None
    model = by_name["model"].endpoint(MODEL_ENDPOINT) if "model" in by_name else None
    if not native or not model:
        return Ratios(None, None, None)
    return Ratios(_ratio(model.get("rps"), native.get("rps")), _ratio(model.get("p50_ms"), native.get("p50_ms")),
                  _ratio(model.get("p99_ms"), native.get("p99_ms")))


def _fmt(value, digits: int = 0, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def render_markdown(run: Run, charts: list[str]) -> str:
    lines = [f"# celsius load test: {run.path.name}", ""]
    if run.meta:
        lines += ["## Run", ""]
        lines += [f"- **{key}**: {json.dumps(value) if isinstance(value, (dict, list)) else value}"
                  for key, value in run.meta.items()]
        lines.append("")
    lines += ["## Results per scenario and endpoint", "",
              "Latencies in milliseconds as Locust reports them: its percentiles are rounded (whole ms below 100 ms, "
              "coarser above); microsecond figures come from the wrk ceilings when a run measured them.", "",
              "| scenario | endpoint | requests | failures | req/s | p50 | p95 | p99 | max |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in run.scenarios:
        rows = s.endpoints.to_dict("records") or [{"name": "(no requests)"}]
        for r in rows:
            lines.append(
                f"| {s.name} | {r.get('method', '')} {r['name']} | {_fmt(r.get('requests'))} | {_fmt(r.get('failures'))} "
                f"| {_fmt(r.get('rps'), 1)} | {_fmt(r.get('p50_ms'))} | {_fmt(r.get('p95_ms'))} | {_fmt(r.get('p99_ms'))} "
                f"| {_fmt(r.get('max_ms'))} |".replace("|  ", "| "))
    ratios = model_over_native(run)
    lines += ["", "Numbers come from Locust's `_stats.csv` files (the console summary agrees with them: the "
              "locustfile lets Locust's CSV writer make a last pass at exit).", ""]
    lines += ["## TensorFlow Serving path against the native path", "",
              f"`{MODEL_ENDPOINT}` in the `model` scenario over `{NATIVE_ENDPOINT}` in the `native` scenario "
              "(same users, spawn rate and duration):", "",
              "| req/s | p50 | p99 |", "|---:|---:|---:|",
              f"| {_fmt_ratio(ratios.rps)} | {_fmt_ratio(ratios.p50)} | {_fmt_ratio(ratios.p99)} |", ""]
    lines += where_the_time_goes(run)
    failures = [f for s in run.scenarios for f in s.failures.assign(scenario=s.name).to_dict("records")]
    lines += ["## Failures", ""]
    if failures:
        lines += ["| scenario | endpoint | error | occurrences |", "|---|---|---|---:|"]
        lines += [f"| {f['scenario']} | {f['method']} {f['name']} | {f['error']} | {_fmt(f['occurrences'])} |"
                  for f in failures]
    else:
        lines.append("None.")
    lines.append("")
    if run.ceilings:
        lines += ["## Ceilings (wrk)", "", "| endpoint | req/s | p50 us | p99 us |", "|---|---:|---:|---:|"]
        lines += [f"| {name} | {_fmt(c.get('rps'))} | {_fmt(c.get('p50_us'))} | {_fmt(c.get('p99_us'))} |"
                  for name, c in run.ceilings.items()]
        lines.append("")
    if charts:
        lines += ["## Charts", ""] + [f"![{Path(c).stem}]({c})" for c in charts] + [""]
    lines += ["Regenerate from the CSV files alone: "
              f"`python -m celsius_loadtest report {run.path}`.", ""]
    return "\n".join(lines)


def where_the_time_goes(run: Run) -> list[str]:
    """A plain statement of what the numbers say, from this run's own figures."""
    native_c, model_c = run.ceilings.get(f"POST {NATIVE_ENDPOINT}"), run.ceilings.get(f"POST {MODEL_ENDPOINT}")
    machine = run.meta.get("machine") if isinstance(run.meta.get("machine"), dict) else {}
    versions = run.meta.get("versions") if isinstance(run.meta.get("versions"), dict) else {}
    by_name = {s.name: s for s in run.scenarios}
    native = by_name["native"].endpoint(NATIVE_ENDPOINT) if "native" in by_name else None
    lines = ["## Where the time goes", ""]
    if machine or versions:
        lines.append(f"- Produced on {machine.get('cores', '?')} cores ({machine.get('cpu', 'unknown CPU')}), "
                     f"model server: {versions.get('model_server', 'unknown')}; service, model server and Locust "
                     "share those cores.")
    lines.append(f"- `{NATIVE_ENDPOINT}` is computed inside the service: the cost is the HTTP exchange itself "
                 "(loopback TCP, parsing, writing the answer). "
                 f"`{MODEL_ENDPOINT}` adds, per request, a gRPC round trip to the model server and one execution "
                 "of the TensorFlow graph there; the validation and the HTTP side are the same code.")
    if native_c and model_c and native_c.get("rps") and model_c.get("rps"):
        lines.append(f"- Ceilings (wrk, same connections): `{MODEL_ENDPOINT}` reaches "
                     f"{_fmt_ratio(_ratio(model_c['rps'], native_c['rps']))} of `{NATIVE_ENDPOINT}`'s throughput "
                     f"({_fmt(model_c['rps'])} against {_fmt(native_c['rps'])} req/s); its median latency is "
                     f"{_fmt_ratio(_ratio(model_c.get('p50_us'), native_c.get('p50_us')))} "
                     f"({_fmt(model_c.get('p50_us'))} us against {_fmt(native_c.get('p50_us'))} us).")
        if native and native.get("rps"):
            lines.append(f"- Locust drove {_fmt(native['rps'])} req/s on `{NATIVE_ENDPOINT}`, "
                         f"{_fmt_ratio(_ratio(native['rps'], native_c['rps']))} of the wrk ceiling: on the native "
                         "path Locust's own CPU, not the service, limits the rate; on the model path the model "
                         "server does.")
    lines.append("- The service is not the model path's bottleneck: `server/bench/model-bench.sh` measures the "
                 "service's and the model server's CPU per request side by side (see server/README.md).")
    lines.append("")
    return lines


def make_charts(run: Run) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts: list[str] = []
    bars = [(f"{s.name}\n{r['name']}", r) for s in run.scenarios for r in s.endpoints.to_dict("records")
            if r.get("requests")]
    if bars:
        fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(bars)), 4))
        width = 0.25
        for i, (key, label) in enumerate((("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99"))):
            ax.bar([x + (i - 1) * width for x in range(len(bars))], [r.get(key, float("nan")) for _, r in bars],
                   width, label=label)
        ax.set_xticks(range(len(bars)), [name for name, _ in bars])
        ax.set_ylabel("latency (ms)")
        ax.set_title("Latency percentiles per scenario and endpoint")
        ax.legend()
        fig.tight_layout()
        fig.savefig(run.path / "latency_percentiles.png", dpi=110)
        plt.close(fig)
        charts.append("latency_percentiles.png")
    histories = [s for s in run.scenarios if not s.history.empty]
    if histories:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
        for s in histories:
            top.plot(s.history["seconds"], s.history["rps"], label=s.name)
            bottom.plot(s.history["seconds"], s.history["p95_ms"], label=s.name)
        top.set_ylabel("req/s")
        bottom.set_ylabel("p95 latency (ms, 10 s window)")
        bottom.set_xlabel("seconds since start")
        top.set_title("Throughput and latency over time")
        top.legend()
        fig.tight_layout()
        fig.savefig(run.path / "over_time.png", dpi=110)
        plt.close(fig)
        charts.append("over_time.png")
    return charts


def write_report(run_dir: Path | str) -> Path:
    run = load_run(run_dir)
    charts = make_charts(run)
    out = run.path / "report.md"
    out.write_text(render_markdown(run, charts))
    return out
