#!/usr/bin/env bash
# Makes sure a Docker engine is running and `debian:bookworm-slim` exists locally.
#  - installs Debian's docker.io, docker-compose and debootstrap when missing;
#  - starts dockerd in the background when no engine answers (logs: /var/log/celsius-dockerd.log);
#  - pulls debian:bookworm-slim, and where no registry is reachable builds it from Debian's
#    own packages with debootstrap (minbase) and `docker import`s it under that name.
# Idempotent and quick on a machine where all of that is already true.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
base_image="debian:bookworm-slim"

if ! docker info >/dev/null 2>&1; then
  # No engine answering (e.g. a fresh Debian machine): Debian's engine, compose and debootstrap.
  "$root/scripts/install-deps.sh" docker
  echo "docker-engine: starting dockerd"
  # The engine outlives this script: it must not keep the caller's other file descriptors open
  # (a caller's lock file, or a pipe its reader then waits on forever), so they are closed.
  (
    for fd in /proc/self/fd/*; do
      fd="${fd##*/}"
      ((fd <= 2)) || eval "exec $fd>&-"
    done
    exec nohup dockerd </dev/null >/var/log/celsius-dockerd.log 2>&1
  ) &
  for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { tail -30 /var/log/celsius-dockerd.log >&2; exit 1; }
fi
echo "docker-engine: $(docker version --format 'server {{.Server.Version}}, client {{.Client.Version}}')"
if ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1; then
  "$root/scripts/install-deps.sh" docker
fi

if docker image inspect "$base_image" >/dev/null 2>&1; then
  echo "docker-engine: $base_image present"
  exit 0
fi
if timeout 60 docker pull "$base_image" >/dev/null 2>&1; then
  echo "docker-engine: pulled $base_image"
  exit 0
fi
# No registry: bootstrap the same Debian release from the mirror this machine's apt uses.
mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
  | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | awk 'NR == 1 {print $1}' || true)"
mirror="${mirror:-http://deb.debian.org/debian}"
rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
echo "docker-engine: no registry; debootstrap bookworm (minbase) from $mirror"
command -v debootstrap >/dev/null || "$root/scripts/install-deps.sh" docker
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/tmp/celsius-debootstrap.log 2>&1 \
  || { tail -30 /tmp/celsius-debootstrap.log >&2; exit 1; }
# Slim like the official image: no apt lists, docs or man pages.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
  "$rootfs"/usr/share/locale/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$base_image" >/dev/null
echo "docker-engine: built $base_image locally ($(docker image inspect -f '{{.Size}}' "$base_image" | awk '{printf "%.0f MB", $1/1e6}'))"
