#!/usr/bin/env bash
# Builds every image: celsius/server, celsius/model-server, celsius/model, celsius/loadtest,
# each tagged with the project version and `dev` (CELSIUS_IMAGE_TAG=x: tagged x only, so a
# test build on a shared engine leaves the images others use alone). Starts a Docker engine when there is none
# and makes debian:bookworm-slim locally when it cannot be pulled (scripts/docker-engine.sh).
# Lints the Dockerfiles with hadolint first. Prints the image sizes at the end.
#   scripts/build-images.sh            all images
#   scripts/build-images.sh server     some of them (server, model-server, model, loadtest)
# Extra CA certificates for https inside builds (pip): every *.crt in
# /usr/local/share/ca-certificates (or $CELSIUS_EXTRA_CA_DIR) is passed as a build argument;
# none: nothing happens.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="$(sed -nE 's/^project\(celsius VERSION ([0-9.]+).*/\1/p' "$root/CMakeLists.txt")"
revision="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
source_url="$(git -C "$root" remote get-url origin 2>/dev/null || echo unknown)"
images=("$@")
((${#images[@]})) || images=(server model-server model loadtest)

"$root/scripts/docker-engine.sh"
export DOCKER_BUILDKIT=0

bin="$("$root/scripts/python-env.sh" "$root/deploy/requirements.txt")"
echo "==> hadolint"
"$bin/hadolint" --config "$root/.hadolint.yaml" "$root/server/Dockerfile" "$root/model_server/Dockerfile" \
  "$root/model/model.Dockerfile" "$root/loadtest/Dockerfile"

ca_dir="${CELSIUS_EXTRA_CA_DIR:-/usr/local/share/ca-certificates}"
extra_ca=""
if compgen -G "$ca_dir/*.crt" >/dev/null; then extra_ca="$(cat "$ca_dir"/*.crt)"; fi

build() {  # name, context, [dockerfile]
  local name="$1" context="$2" file="${3:-$2/Dockerfile}"
  local tags=(-t "celsius/$name:$version" -t "celsius/$name:dev")
  [[ -n "${CELSIUS_IMAGE_TAG:-}" ]] && tags=(-t "celsius/$name:$CELSIUS_IMAGE_TAG")
  echo "==> celsius/$name (${tags[*]})"
  local started=$SECONDS
  docker build -q -f "$file" "${tags[@]}" \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg SOURCE="$source_url" \
    --build-arg EXTRA_CA_CERTS="$extra_ca" "$context" >/dev/null
  echo "    built in $((SECONDS - started)) s"
}
for image in "${images[@]}"; do
  case "$image" in
    server) build server "$root" "$root/server/Dockerfile" ;;
    model-server) build model-server "$root" "$root/model_server/Dockerfile" ;;
    model) build model "$root/model" "$root/model/model.Dockerfile" ;;
    loadtest) build loadtest "$root/loadtest" ;;
    *) echo "unknown image $image" >&2; exit 2 ;;
  esac
done
echo "==> image sizes"
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep "^celsius/.*:${CELSIUS_IMAGE_TAG:-$version} " | sort
