#!/usr/bin/env bash
# The main job: installs what is missing, builds the service, then runs
# `python -m celsius_loadtest run`: exports the model, starts a model server on loopback
# (tensorflow_model_server when it is on PATH, else the local stand-in), starts the service
# wired to it over gRPC, waits until /readyz is 200, runs the Locust scenarios native, model
# and mixed with identical settings, measures wrk ceilings and writes results/<run-id>/
# (CSV files, HTML reports, run.json, ceilings.json, report.md and charts).
# Every process it starts is stopped on exit and on Ctrl-C.
#
# Options go to the runner (defaults: --duration 75s --users 16, about five minutes):
#   scripts/run.sh --duration 30s --users 8 --scenarios native,model
#   scripts/run.sh --help
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

"$root/scripts/install-deps.sh" bench
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
