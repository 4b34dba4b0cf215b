"""Command line:
  python -m celsius_model export --output DIR [--version N] [--overwrite]
(The model is served by celsius-model-server, model_server/, or tensorflow_model_server.)
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m celsius_model", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    export_cmd = commands.add_parser("export", help="write the SavedModel to OUTPUT/<version>/")
    export_cmd.add_argument("--output", required=True, help="model base path (TF Serving's --model_base_path)")
    export_cmd.add_argument("--version", type=int, default=1, help="numeric version folder (default 1)")
    export_cmd.add_argument("--overwrite", action="store_true", help="replace an existing version")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out
    from celsius_model.export import export

    if args.command == "export":
        try:
            path = export(args.output, args.version, args.overwrite)
        except (FileExistsError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
