# Sourced by the benchmark scripts: start background processes so that every one of them
# is stopped on every exit path (normal end, error under `set -e`, SIGINT, SIGTERM).
#   spawn CMD...   starts CMD in the background from THIS shell (never from a subshell or a
#                  process substitution, whose variables the parent never sees) and records
#                  its PID in `pids`; the PID is also left in $spawned.
#   run CMD...     runs CMD in the background and waits for it, so that a signal to the
#                  script is handled at once (bash defers traps while a foreground child runs).
#   stop_all       SIGTERM to every recorded process still running as this shell's child,
#                  SIGKILL to any left after 10 s, then reaps them.
# The EXIT trap calls stop_all, then `on_exit` if the script defines one; SIGINT and SIGTERM
# exit with 130/143, which runs the EXIT trap.
pids=()
spawned=
spawn() {
  "$@" &
  spawned=$!
  pids+=("$spawned")
}
run() {
  "$@" &
  local pid=$! rc=0
  pids+=("$pid")
  wait "$pid" || rc=$?
  _forget "$pid"
  return "$rc"
}
_forget() {
  local kept=() p
  for p in "${pids[@]}"; do [[ "$p" == "$1" ]] || kept+=("$p"); done
  pids=("${kept[@]}")
}
# True while PID runs as a child of this shell (not a zombie, not a reused PID).
_our_child() {
  local stat state ppid
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"  # fields after "(comm) ": state ppid ...
  read -r state ppid _ <<<"$stat"
  [[ "$state" != Z && "$ppid" == "$$" ]]
}
stop_all() {
  local p deadline
  for p in "${pids[@]}"; do _our_child "$p" && kill -TERM "$p" 2>/dev/null; done
  deadline=$((SECONDS + 10))
  for p in "${pids[@]}"; do
    while _our_child "$p" && ((SECONDS < deadline)); do sleep 0.1; done
    _our_child "$p" && kill -KILL "$p" 2>/dev/null
  done
  wait 2>/dev/null || true
  pids=()
}
_exit_trap() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  if declare -F on_exit >/dev/null; then on_exit; fi
  exit "$rc"
}
trap _exit_trap EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
