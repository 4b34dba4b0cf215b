#!/usr/bin/env bash
# Installs the Debian packages the C++ service needs to build, test and benchmark.
# Idempotent: packages already present are skipped, so a warm machine pays nothing.
# Usage: scripts/install-deps.sh [cpp|bench|fuzz|docker|all]   (default: cpp; docker is not in all)
set -euo pipefail

group="${1:-cpp}"

cpp_pkgs=(
  build-essential cmake ninja-build pkg-config
  libboost-dev rapidjson-dev libspdlog-dev libfmt-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  curl ca-certificates
)
bench_pkgs=(wrk nginx-light util-linux)
fuzz_pkgs=(clang libclang-rt-14-dev clang-format clang-tidy)
docker_pkgs=(docker.io docker-compose debootstrap)

case "$group" in
  cpp) want=("${cpp_pkgs[@]}") ;;
  bench) want=("${cpp_pkgs[@]}" "${bench_pkgs[@]}") ;;
  fuzz) want=("${cpp_pkgs[@]}" "${fuzz_pkgs[@]}") ;;
  docker) want=("${docker_pkgs[@]}") ;;
  all) want=("${cpp_pkgs[@]}" "${bench_pkgs[@]}" "${fuzz_pkgs[@]}") ;;
  *) echo "usage: $0 [cpp|bench|fuzz|docker|all]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#want[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
