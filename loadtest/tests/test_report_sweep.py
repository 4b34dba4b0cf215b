"""The report's sweep sections on a hand-made sweep.json with known answers, and the report's
robustness: hostile failure messages in every table (issue 10 item 15: an nginx error page with
`|` broke the failures table), no machine paths.

The hand-made sweep (bound 10 ms, start 100 req/s):
- native: 100 ok (p50 80 us, p99 200 us), 200 ok (p50 90, p99 250; 800 requests, service
  0.008 CPU s = 10 us per request, model server 0), 400 out of bounds because the generator
  ran out -> knee 200, a lower bound.
- model-grpc: 100 ok (p50 2 ms, p99 8 ms; 400 requests, service 0.04 s = 100 us, model server
  0.4 s = 1,000 us per request; 4 s wall: 0.10 cores in the model server), 200 latency twice
  -> knee 100.
- model-rest: 100 with errors (hostile messages) -> no knee.
Ratios against native: knee 100/200 = 0.50x, at most (native's knee is a lower bound); p50
at 100 req/s 2000/80 = 25.00x; p99 8000/200 = 40.00x; CPU per request 1,100/10 = 110.00x.

Rendered output is checked with a real CommonMark + GFM-tables parser (markdown-it-py), not
by string matching alone: every row must have its columns, every cell must read as the text
that went in.
"""

from __future__ import annotations

import csv
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from celsius_loadtest import steps as plan
from celsius_loadtest.report import load_run, md_code, md_table, md_text, render_markdown, scrub_paths, write_report
from celsius_loadtest.stack import REPO

FIXTURE = Path(__file__).parent / "fixtures" / "run"

NGINX_502 = ("HTTP 502: <html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
             "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.22.1 | upstream</center>\r\n"
             "</body>\r\n</html>\r\n")
# Each hostile message with the text a reader must see in its cell.
HOSTILE = [
    (NGINX_502, "HTTP 502: <html> <head><title>502 Bad Gateway</title></head> <body> <center><h1>502 Bad Gateway"
                "</h1></center> <hr><center>nginx/1.22.1 | upstream</center> </body> </html>"),
    ("pipe | in | the | middle", "pipe | in | the | middle"),
    ("|---|---|", "|---|---|"),
    ("trailing backslash \\", "trailing backslash \\"),
    ("already escaped \\| pipe", "already escaped \\| pipe"),
    ("`code span | with pipe`", "`code span | with pipe`"),
    ("<script>alert(1)</script>", "<script>alert(1)</script>"),
    ("line1\rline2\u2028line3\x00nul\u202eRTL\u200b", "line1 line2 line3\ufffdnul\ufffdRTL\ufffd"),
    ("&amp; &lt;entity&gt; &#124;", "&amp; &lt;entity&gt; &#124;"),
    ("![img](javascript:alert(1)) [x](http://127.0.0.1/) <http://127.0.0.1/>",
     "![img](javascript:alert(1)) [x](http://127.0.0.1/) <http://127.0.0.1/>"),
    ("$x$ ~~strike~~ **bold** _em_ *em*", "$x$ ~~strike~~ **bold** _em_ *em*"),
    ("x" * 1000, "x" * 300 + "\u2026 (1,000 characters)"),
]


def step(rate, verdict, requests, p50=None, p99=None, service=0.0, model=0.0, errors=0, messages=None):
    return plan.Step(rate, requests=requests, errors=errors, sent_rps=rate, achieved_rps=rate, p50_us=p50,
                     p90_us=p99, p99_us=p99, p999_us=p99, max_us=p99, measured=requests, wall_s=4.0,
                     generator_cores=0.1, cpu_s={"service": service, "model_server": model, "generator": 0.1},
                     errors_by_message=messages or {}, verdict=verdict).to_dict()


def configuration(name, title, steps, **extra):
    return {"name": name, "title": title, "path": "/convert", "transport": "grpc", "steps": steps,
            "ceiling": extra.get("ceiling"), "knee": {}}


def sweep_json() -> dict:
    hostile = {message: i + 1 for i, (message, _) in enumerate(HOSTILE)}
    return {
        "generator": {"tool": "vegeta", "version": "v12.13.0", "workers": 256, "timeout_s": 5.0},
        "body": '{"fahrenheit": 98.6}', "step_seconds": 4.0, "warmup_s": 0.5,
        "policy": {"start_rps": 100.0, "p99_bound_us": 10_000.0},
        "placement": {"service": 0, "model_server": 1, "generator": 1},
        "model_server": "stand-in (python -m celsius_model serve, real TensorFlow)",
        "configurations": [
            configuration("native", "native (POST /convert)", [
                step(100.0, "ok", 400, 80, 200, 0.004), step(200.0, "ok", 800, 90, 250, 0.008),
                step(400.0, "generator", 1600, 900, 60_000, 0.016)], ceiling={"rps": 100_000.0}),
            configuration("model-grpc", "model, gRPC, unbatched", [
                step(100.0, "ok", 400, 2000, 8000, 0.04, 0.4), step(200.0, "latency", 800, 9000, 30_000, 0.08, 0.8),
                step(200.0, "latency", 800, 9500, 31_000, 0.08, 0.8)]),
            configuration("model-rest", "model, REST | unbatched", [
                step(100.0, "errors", 400, 3000, 9000, 0.04, 0.4, errors=78, messages=hostile)]),
        ],
        "skipped": [{"name": "model-server-batching", "title": "model, gRPC, model server batching",
                     "reason": "the model server does not list --enable_batching\n<b>|</b> in its --help"}],
    }


@pytest.fixture()
def run_dir(tmp_path) -> Path:
    target = tmp_path / "20261130T120000Z"
    shutil.copytree(FIXTURE, target)
    (target / "sweep.json").write_text(json.dumps(sweep_json()))
    with open(target / "native_failures.csv", "w", newline="") as f:  # Locust writes it with csv.writer too
        writer = csv.writer(f)
        writer.writerow(["Method", "Name", "Error", "Occurrences"])
        for i, (message, _) in enumerate(HOSTILE):
            writer.writerow(["POST", "/convert", message, 100 + i])
    return target


class Tables(HTMLParser):
    """Rendered HTML -> tables -> rows -> cells: (text, inner tags)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[tuple[str, list[str]]]]] = []
        self.cell: list | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = ["", []]
        elif self.cell is not None:
            self.cell[1].append(tag)

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append((self.cell[0], self.cell[1]))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[0] += data


def rendered_tables(markdown: str) -> list:
    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)
    parser = Tables()
    parser.feed(html)
    return parser.tables


def table_with(tables, header: str):
    return next(t for t in tables if header in [text for text, _ in t[0]])


def test_hostile_messages_stay_text_in_every_table(run_dir):
    tables = rendered_tables(render_markdown(load_run(run_dir), []))
    for header, first, counts in (("occurrences", "native", [100 + i for i in range(len(HOSTILE))]),
                                  ("count", "model-rest", [i + 1 for i in range(len(HOSTILE))])):
        table = table_with(tables, header)
        assert all(len(r) == 4 for r in table), "a message broke the table's columns"
        rows = [r for r in table[1:] if r[0][0] == first]  # (the fixture's other scenarios have failures too)
        assert len(rows) == len(HOSTILE)
        assert [r[2][0] for r in rows] == [shown for _, shown in HOSTILE]
        assert all(r[2][1] == [] for r in rows), "a message was rendered as markup"
        assert [int(r[3][0]) for r in rows] == counts


def test_md_text_and_md_table_alone():
    assert md_text(None) == "-" and md_text(float("nan")) == "-"
    table = md_table(["a|b", "n"], [["x\n|y", 1]])
    assert len(table) == 3
    parsed = rendered_tables("\n".join(table))[0]
    assert [[c for c, _ in row] for row in parsed] == [["a|b", "n"], ["x |y", "1"]]


def test_knees_limits_and_skips(run_dir):
    text = render_markdown(load_run(run_dir), [])
    tables = rendered_tables(text)
    knees = {r[0][0]: [c for c, _ in r] for r in table_with(tables, "knee (req/s)")[1:]}
    assert knees["native (POST /convert)"][1:7] == [
        "\u2265 200", "the load generator's CPU was the limit, not the system at 400 req/s", "90 us", "250 us",
        "250 us", "100,000"]
    assert knees["model, gRPC, unbatched"][1:3] == ["100", "p99 above the bound at 200 req/s"]
    assert knees["model, gRPC, unbatched"][7] == "3"  # steps run, the repeat included
    assert knees["model, REST | unbatched"][1] == "none"
    assert "p99 \u2264 10 ms" in text
    assert "- **model, gRPC, model server batching**: the model server does not list \\-\\-enable" not in text
    assert "- **model, gRPC, model server batching**: the model server does not list --enable\\_batching " \
           "\\<b\\>\\|\\</b\\> in its --help" in text


def test_ratios_against_native(run_dir):
    table = table_with(rendered_tables(render_markdown(load_run(run_dir), [])), "p50 at 100 req/s")
    rows = {r[0][0]: [c for c, _ in r][1:] for r in table[1:]}
    assert rows["model, gRPC, unbatched"] == ["\u2264 0.50x", "25.00x", "40.00x", "110.00x"]
    assert rows["model, REST | unbatched"][0] == "-"


def test_cpu_per_request_at_the_knee(run_dir):
    text = render_markdown(load_run(run_dir), [])
    table = table_with(rendered_tables(text), "service CPU/request")
    rows = {r[0][0]: [c for c, _ in r][1:] for r in table[1:]}
    # at, service, service cores, model server, model server cores, total, resolution (10 ms / 400 requests),
    # generator (0.1 s / 400 = 250 us)
    assert rows["model, gRPC, unbatched"] == ["100", "100 us", "0.01", "1.00 ms", "0.10", "1.10 ms", "\u00b1 25 us",
                                              "250 us"]
    assert rows["native (POST /convert)"][:6] == ["200", "10 us", "0.00", "0 us", "0.00", "10 us"]
    assert ("- model, gRPC, unbatched: 1.10 ms of CPU per request at 100 req/s, 91 % of it in the model server and "
            "9 % in the service; 110.00x native's 10 us.") in text


def test_charts_are_made_and_linked(run_dir):
    out = write_report(run_dir)
    text = out.read_text()
    for chart in ("sweep_latency.png", "cpu_per_request.png", "latency_percentiles.png", "over_time.png"):
        assert (run_dir / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({chart})" in text


def test_a_run_with_only_a_sweep(tmp_path):
    (tmp_path / "sweep.json").write_text(json.dumps(sweep_json()))
    text = write_report(tmp_path).read_text()
    assert "## Capacity sweep" in text and "## Locust" not in text


def test_no_machine_paths(run_dir):
    (run_dir / "run.json").write_text(json.dumps({
        "command": f"python -m celsius_loadtest run --results {run_dir.parent} --binary /root/x/celsius-server",
        "note": f"{REPO}/server/build/release/celsius-server"}))
    text = render_markdown(load_run(run_dir), [])
    for machine_path in (str(run_dir.parent), "/root/", str(REPO)):
        assert machine_path not in text
    assert "server/build/release/celsius-server" in text
    assert "report <this run folder>`" in text  # a folder outside the repository is not named by its path


def test_regenerate_command_is_repository_relative(tmp_path):
    results = REPO / "results" / f"test-{tmp_path.name}"
    try:
        shutil.copytree(FIXTURE, results)
        text = render_markdown(load_run(results), [])
        assert f"`PYTHONPATH=loadtest/src .venv/bin/python -m celsius_loadtest report results/{results.name}`" in text
    finally:
        shutil.rmtree(results, ignore_errors=True)


@pytest.mark.parametrize(("text", "scrubbed"), [
    (f"{REPO}/results/x", "results/x"),
    (f"cd {REPO} && go", "cd . && go"),
    ("see /tmp/pytest-of-root/p0/run and /home/me/x.", "see <path> and <path>"),
    ("POST /convert/model and /readyz stay", "POST /convert/model and /readyz stay"),
    ("http://127.0.0.1:8000/work/x stays a URL path", "http://127.0.0.1:8000/work/x stays a URL path"),
])
def test_scrub_paths(text, scrubbed):
    assert scrub_paths(text) == scrubbed


def test_undecodable_bytes_in_a_failures_file(run_dir):
    (run_dir / "native_failures.csv").write_bytes(b"Method,Name,Error,Occurrences\r\n"
                                                  b'POST,/convert,"\xff\xfe not UTF-8 | <b>x</b>",3\r\n')
    table = table_with(rendered_tables(render_markdown(load_run(run_dir), [])), "occurrences")
    native = [[c for c, _ in r] for r in table[1:] if r[0][0] == "native"]
    assert native == [["native", "POST /convert", "\ufffd\ufffd not UTF-8 | <b>x</b>", "3"]]


def rendered_code(markdown: str) -> list[str]:
    class Code(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.spans, self.inside = [], False

        def handle_starttag(self, tag, attrs):
            if tag == "code":
                self.inside = True
                self.spans.append("")

        def handle_endtag(self, tag):
            self.inside = self.inside and tag != "code"

        def handle_data(self, data):
            if self.inside:
                self.spans[-1] += data

    parser = Code()
    parser.feed(MarkdownIt("commonmark").render(markdown))
    return parser.spans


@pytest.mark.parametrize("text", ["--enable_batching=true", "a ` b", "``x``", "`", "x | <b>y</b> \\ *z*"])
def test_md_code_shows_the_text_as_is(text):
    assert rendered_code(f"flag {md_code(text)} here") == [text]


def test_flags_of_a_batching_configuration_are_shown_as_written(run_dir):
    data = sweep_json()
    data["configurations"].append({**configuration("model-server-batching", "model, gRPC, model server batching",
                                                   data["configurations"][1]["steps"]),
                                   "model_server_flags": ["--enable_batching", "--batching_parameters_file"],
                                   "batching_parameters": "max_batch_size { value: 128 }\nnum_batch_threads { value: 1 }\n",
                                   "service_flags": ["--threads", "1"]})
    (run_dir / "sweep.json").write_text(json.dumps(data))
    text = render_markdown(load_run(run_dir), [])
    line = next(x for x in text.splitlines() if x.startswith("- model, gRPC, model server batching:"))
    assert rendered_code(line) == ["--enable_batching --batching_parameters_file",
                                   "max_batch_size { value: 128 } num_batch_threads { value: 1 }"]


@pytest.mark.parametrize(("us", "shown"), [(None, "-"), (85, "85 us"), (999.4, "999 us"), (999.6, "1.00 ms"),
                                           (1250, "1.25 ms"), (9996, "10.0 ms"), (12_345, "12.3 ms"),
                                           (999_960, "1.00 s"), (2.1e6, "2.10 s")])
def test_latency_units_keep_their_digits_at_the_boundaries(us, shown):
    from celsius_loadtest.report import fmt_us

    assert fmt_us(us) == shown


def test_locust_rate_over_a_lower_bound_knee_is_an_upper_bound(run_dir):
    lines = render_markdown(load_run(run_dir), []).splitlines()
    # native's knee is only a lower bound (>= 200 req/s: the generator ran out), model-grpc's is not.
    assert any(line.startswith("- `native`: ") and "that is \u2264 0.50x the sweep's knee" in line for line in lines)
    assert any(line.startswith("- `model`: ") and "that is 0.50x the sweep's knee" in line for line in lines)
