#!/usr/bin/env bash
# Creates the project's Python virtualenv (.venv at the repository root) if missing and
# installs the given requirement files into it (files named *-nodeps.txt with --no-deps).
# Prints the venv's bin folder.
# Usage: scripts/python-env.sh REQUIREMENTS.txt [...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
fi
for req in "$@"; do
  no_deps=()
  [[ "$req" == *-nodeps.txt ]] && no_deps=(--no-deps)
  "$venv/bin/pip" install -q --disable-pip-version-check "${no_deps[@]}" -r "$req" >&2
done
echo "$venv/bin"
