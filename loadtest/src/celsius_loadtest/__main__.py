"""Command line:
  python -m celsius_loadtest run [options]      the whole local stack, Locust scenarios, capacity sweep, report
  python -m celsius_loadtest cluster [options]  the charts on a Kubernetes cluster, distributed Locust, timeline, report
  python -m celsius_loadtest report RUN_DIR  regenerates RUN_DIR/report.md (and charts) from its CSV files alone"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:
        from celsius_loadtest.runner import main as run_main

        return run_main(argv[1:])
    if argv[:1] == ["cluster"]:
        from celsius_loadtest.cluster import main as cluster_main

        return cluster_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m celsius_loadtest", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the whole local stack and the load test (see run --help)")
    commands.add_parser("cluster", help="the charts and the load test on a Kubernetes cluster (see cluster --help)")
    report = commands.add_parser("report", help="write RUN_DIR/report.md from the CSV files in RUN_DIR")
    report.add_argument("run_dir")
    args = parser.parse_args(argv)
    from celsius_loadtest.report import write_report

    try:
        print(write_report(args.run_dir))
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
