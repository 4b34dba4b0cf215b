#!/usr/bin/env bash
# The main job: installs what is missing (Debian packages, the Python env, vegeta), builds
# the service, then runs `python -m celsius_loadtest run`: exports the model, starts a model
# server on loopback (tensorflow_model_server when it is on PATH, else the local stand-in),
# starts the service wired to it over gRPC, runs the Locust scenarios native, model and mixed
# with identical settings, then the capacity sweep (every configuration under vegeta's
# open-loop load at fixed rates, service and model server pinned to a CPU each, CPU per
# request from /proc) and writes results/<run-id>/ (Locust's CSV files and HTML reports,
# sweep.json, sweep.csv, run.json, report.md and its charts).
# Every process it starts is stopped on exit and on Ctrl-C.
#
# Options go to the runner (defaults: 60 s per Locust scenario with 16 users, 4 s sweep steps
# from 100 req/s with a 10 ms p99 bound; about eight minutes on 2 cores):
#   scripts/run.sh --duration 30s --users 8 --scenarios native,model
#   scripts/run.sh --scenarios none --sweep native,model-grpc      # the sweep alone
#   scripts/run.sh --help
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

"$root/scripts/install-deps.sh" bench
"$root/scripts/install-tools.sh" vegeta >/dev/null
cd "$root"
binary=build/release/celsius-server
if [[ ! -x "$binary" ]] || [[ -n "$(find server/src server/api proto CMakeLists.txt server/CMakeLists.txt -newer "$binary" -print -quit)" ]]; then
  echo "==> building the service (release preset)"
  cmake --preset release >/dev/null
  cmake --build --preset release --target celsius-server
fi
bin="$("$root/scripts/python-env.sh" "$root/model/requirements.txt" "$root/model/requirements-nodeps.txt" \
  "$root/loadtest/requirements.txt")"
cd "$root"
CELSIUS_RUN_COMMAND="scripts/run.sh $*" PYTHONPATH="$root/loadtest/src" MPLBACKEND=Agg exec "$bin/python" -m celsius_loadtest run "$@"
