#!/usr/bin/env bash
# Prints the bin folder of a Go toolchain new enough for the Go-built tools and the local
# cluster's binaries (at least Go 1.26.0: helm v3.22.0's go.mod asks for it), for the scripts
# that run `go` (install-tools.sh, cluster.sh):
#   - the `go` on PATH when it is new enough;
#   - else Go 1.26.8 from the Go module proxy: module golang.org/toolchain, the archive the go
#     command itself switches to (GOTOOLCHAIN), checked against the h1 hash the checksum
#     database lists for it (fetched through the same proxy, $GOPROXY/sumdb/sum.golang.org; the
#     database's signed tree is not verified, so this catches a damaged download, not a
#     dishonest proxy) and unpacked once into ~/.cache/celsius/go/go1.26.8.
# Usage: PATH="$(scripts/go-env.sh):$PATH"   (messages on stderr; exit 1 when it cannot)
set -euo pipefail

min=1.26.0
version=1.26.8
cache="${XDG_CACHE_HOME:-$HOME/.cache}/celsius/go"

new_enough() {  # "go1.26.8" -> whether it is at least $min
  local v="${1#go}"
  [[ "$v" =~ ^[0-9]+\.[0-9]+ ]] && [[ "$(printf '%s\n%s\n' "$min" "$v" | sort -V | head -1)" == "$min" ]]
}

if command -v go >/dev/null; then
  have="$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || true)"
  if [[ -n "$have" ]] && new_enough "$have"; then
    dirname "$(command -v go)"
    exit 0
  fi
  echo "go-env: the go on PATH is ${have:-of unknown version}, older than $min" >&2
fi

case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) echo "go-env: no Go toolchain for $(uname -m); install Go $min or newer (go.dev)" >&2; exit 1 ;;
esac
dir="$cache/go$version"
if [[ ! -x "$dir/bin/go" ]]; then
  proxy="${GOPROXY:-https://proxy.golang.org}"
  proxy="${proxy%%[,|]*}"  # the first proxy of the list
  [[ "$proxy" == direct || "$proxy" == off ]] && proxy=https://proxy.golang.org
  module="golang.org/toolchain@v0.0.1-go$version.linux-$arch"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "go-env: downloading Go $version ($module) from $proxy" >&2
  curl -fsSL --retry 3 -o "$tmp/go.zip" "$proxy/${module%@*}/@v/${module#*@}.zip"
  expected="$(curl -fsSL --retry 3 "$proxy/sumdb/sum.golang.org/lookup/$module" |
    awk -v m="${module%@*}" -v v="${module#*@}" '$1 == m && $2 == v {print $3}')"
  [[ -n "$expected" ]] || { echo "go-env: no checksum for $module in the checksum database" >&2; exit 1; }
  # h1: the module zip's dirhash (golang.org/x/mod/sumdb/dirhash Hash1), then unpacked.
  python3 - "$tmp/go.zip" "$expected" "$tmp/unpacked" <<'PY'
import base64, hashlib, sys, zipfile
archive, expected, target = sys.argv[1:]
with zipfile.ZipFile(archive) as z:
    names = sorted(n for n in z.namelist() if not n.endswith("/"))
    lines = "".join(f"{hashlib.sha256(z.read(n)).hexdigest()}  {n}\n" for n in names)
    got = "h1:" + base64.b64encode(hashlib.sha256(lines.encode()).digest()).decode()
    if got != expected:
        sys.exit(f"go-env: checksum mismatch for {archive}: {got}, the checksum database says {expected}")
    z.extractall(target)
PY
  root="$tmp/unpacked/$module"
  chmod +x "$root"/bin/* "$root"/pkg/tool/*/*  # module zips keep no file modes
  mkdir -p "$cache"
  rm -rf "$dir"
  mv "$root" "$dir"
  echo "go-env: Go $version in $dir" >&2
fi
echo "$dir/bin"
