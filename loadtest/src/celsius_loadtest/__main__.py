"""Command line: `python -m celsius_loadtest report RUN_DIR` regenerates RUN_DIR/report.md
(and its charts) from the Locust CSV files in RUN_DIR alone."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m celsius_loadtest", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
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
