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
# from 100 req/s with a 10 ms p99 bound; about nine minutes on 2 cores):
#   scripts/run.sh --duration 30s --users 8 --scenarios native,model
#   scripts/run.sh --scenarios none --sweep native,model-grpc      # the sweep alone
#   scripts/run.sh --help
# Wrong options are refused (exit 2) before anything is installed, built or started.
#
# On Kubernetes (deploy/README.md, "The main job on the cluster"):
#   scripts/run.sh --cluster [--down] [options]
# builds the project's images (cached layers), brings the local cluster up if it is not
# (scripts/cluster.sh up: binaries cached), imports the images, then runs `python -m
# celsius_loadtest cluster`: installs the celsius chart (its defaults apart from the model
# server's image), runs the scenarios native, model and mixed with the locust chart (headless,
# master + 2 workers; the same users and duration as above), records every 5 s each
# Deployment's replicas and CPU utilisation and each replica's answers, and writes
# results/<run-id>/ with Locust's files, timeline.csv, answers.csv, run.json and report.md.
# The releases are uninstalled on every exit path; the cluster is LEFT UP (the next run reuses
# it), unless --down is given: then it is taken down at the end, whatever happened.
#   scripts/run.sh --cluster --duration 30s --users 8 --scenarios model
#   scripts/run.sh --cluster --help
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# --cluster may stand anywhere among the options; the job gets the others.
cluster=0
job_args=()
for a in "$@"; do
  if [[ "$a" == --check-options* ]]; then  # the job's own first step below; given here it would check and then run everything
    echo "scripts/run.sh: error: --check-options is for python -m celsius_loadtest run|cluster" >&2
    exit 2
  fi
  if [[ "$a" == --cluster ]]; then cluster=1; else job_args+=("$a"); fi
done

cluster_job() {
  local down=0 args=() a
  for a in "$@"; do
    if [[ "$a" == --down ]]; then down=1; else args+=("$a"); fi
  done
  local bin
  bin="$("$root/scripts/python-env.sh" "$root/loadtest/requirements.txt")"
  local python=("$bin/python" -m celsius_loadtest cluster)
  if [[ " ${args[*]} " == *" --help "* || " ${args[*]} " == *" -h "* ]]; then
    CELSIUS_PROG="scripts/run.sh --cluster" PYTHONPATH="$root/loadtest/src" exec "${python[@]}" --help
  fi
  # Wrong options fail now, not after the images, the cluster and the imports.
  CELSIUS_PROG="scripts/run.sh --cluster" PYTHONPATH="$root/loadtest/src" "${python[@]}" "${args[@]}" --check-options
  local job_pid=""
  # The job runs in the background so that this shell can pass a Ctrl-C or SIGTERM on to it
  # (it then uninstalls its releases) and take the cluster down after it with --down.
  finish() {
    local code=$?
    if [[ -n "$job_pid" ]]; then
      kill -TERM "$job_pid" 2>/dev/null || true
      wait "$job_pid" 2>/dev/null || true
    fi
    if ((down)); then "$root/scripts/cluster.sh" down || code=1; fi
    exit "$code"
  }
  trap finish EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  "$root/scripts/build-images.sh"
  "$root/scripts/cluster.sh" up
  "$root/scripts/cluster.sh" load-images
  eval "$("$root/scripts/cluster.sh" env)"
  CELSIUS_RUN_COMMAND="scripts/run.sh --cluster $*" PYTHONPATH="$root/loadtest/src" MPLBACKEND=Agg \
    "${python[@]}" "${args[@]}" &
  job_pid=$!
  local code=0
  wait "$job_pid" || code=$?
  job_pid=""
  exit "$code"
}
if ((cluster)); then
  cluster_job ${job_args[@]+"${job_args[@]}"}
fi

if [[ " $* " == *" --help "* || " $* " == *" -h "* ]]; then  # the options, without installing or building
  bin="$("$root/scripts/python-env.sh" "$root/loadtest/requirements.txt")"
  CELSIUS_PROG=scripts/run.sh PYTHONPATH="$root/loadtest/src" exec "$bin/python" -m celsius_loadtest run --help
fi
# Wrong options fail now, not after the packages, the tools and the build.
bin="$("$root/scripts/python-env.sh" "$root/loadtest/requirements.txt")"
CELSIUS_PROG=scripts/run.sh PYTHONPATH="$root/loadtest/src" "$bin/python" -m celsius_loadtest run "$@" --check-options
"$root/scripts/install-deps.sh" bench
"$root/scripts/install-tools.sh" vegeta >/dev/null
# The virtualenv first: celsius-model-server is built against its tensorflow-cpu wheel's C API.
bin="$("$root/scripts/python-env.sh" "$root/model/requirements.txt" "$root/model/requirements-nodeps.txt" \
  "$root/loadtest/requirements.txt")"
# The build in the repository; the job in the caller's folder, where relative paths in the options
# were checked and mean what the caller meant.
(
  cd "$root"
  stale() { [[ ! -x "$1" ]] || [[ -n "$(find "${@:2}" CMakeLists.txt proto -newer "$1" -print -quit)" ]]; }
  if stale build/release/celsius-server server/src server/api server/CMakeLists.txt ||
    stale build/release/celsius-model-server model_server/src model_server/CMakeLists.txt; then
    echo "==> building the service and the model server (release preset)"
    cmake --preset release -DCELSIUS_REQUIRE_TENSORFLOW=ON >/dev/null
    cmake --build --preset release --target celsius-server celsius-model-server
  fi
)
CELSIUS_RUN_COMMAND="scripts/run.sh $*" PYTHONPATH="$root/loadtest/src" MPLBACKEND=Agg exec "$bin/python" -m celsius_loadtest run "$@"
