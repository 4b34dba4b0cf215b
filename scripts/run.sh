#!/usr/bin/env bash
# The main job: installs what is missing, builds the service, then runs
# `python -m celsius_loadtest run`: exports the model, starts a model server on loopback
# (tensorflow_model_server when it is on PATH, else celsius-model-server), starts the service
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
# The virtualenv first: celsius-model-server is built against its tensorflow-cpu wheel's C API.
bin="$("$root/scripts/python-env.sh" "$root/model/requirements.txt" "$root/model/requirements-nodeps.txt" \
  "$root/loadtest/requirements.txt")"
cd "$root"
stale() { [[ ! -x "$1" ]] || [[ -n "$(find "${@:2}" CMakeLists.txt proto -newer "$1" -print -quit)" ]]; }
if stale build/release/celsius-server server/src server/api server/CMakeLists.txt ||
  stale build/release/celsius-model-server model_server/src model_server/CMakeLists.txt; then
  echo "==> building the service and the model server (release preset)"
  cmake --preset release -DCELSIUS_REQUIRE_TENSORFLOW=ON >/dev/null
  cmake --build --preset release --target celsius-server celsius-model-server
fi
CELSIUS_RUN_COMMAND="scripts/run.sh $*" PYTHONPATH="$root/loadtest/src" MPLBACKEND=Agg exec "$bin/python" -m celsius_loadtest run "$@"
