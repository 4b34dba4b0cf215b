#!/usr/bin/env bash
# The main job: installs what is missing (Debian packages, the Python env, vegeta), builds
# the service, then runs `python -m celsius_loadtest run`: exports the model, starts a model
# server on loopback (tensorflow_model_server when it is on PATH, else celsius-model-server),
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
