#!/usr/bin/env bash
# Installs the Go-built tools into .tools/bin (repo-local, not committed), at pinned versions,
# through the Go module proxy: the chart and workflow checks' (helm, kubeconform, actionlint,
# kube-score) and the open-loop load generator of the main job's capacity sweep (vegeta).
# Prints the bin folder. Idempotent: a tool already at its pinned version is not rebuilt.
#   scripts/install-tools.sh [helm kubeconform actionlint kube-score vegeta]   (default: all)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/.tools/bin"
mkdir -p "$bin"
declare -A modules=(
  [helm]="helm.sh/helm/v3/cmd/helm@v3.22.0"
  [kubeconform]="github.com/yannh/kubeconform/cmd/kubeconform@v0.7.0"
  [actionlint]="github.com/rhysd/actionlint/cmd/actionlint@v1.7.12"
  [kube-score]="github.com/zegl/kube-score/cmd/kube-score@v1.20.0"
  [vegeta]="github.com/tsenart/vegeta/v12@v12.13.0"
)
# Link-time settings per tool. Helm's Makefile stamps its version and the Kubernetes version
# that `helm template` and `helm lint` assume without --kube-version (.Capabilities.KubeVersion;
# 1.<minor of its client-go>); `go install` stamps neither, and that Helm assumes v1.20
# (pkg/chartutil/capabilities.go, pkg/lint/rules/deprecations.go), which charts needing a
# current Kubernetes refuse. Same flags as the Makefile, so it matches Helm's release binary.
helm_ldflags() {
  local version="${modules[helm]#*@}" go_mod client_go minor
  go_mod="$(go mod download -json "helm.sh/helm/v3@$version" | sed -nE 's/^\s*"GoMod": "(.*)",?$/\1/p')"
  client_go="$(awk '$1 == "k8s.io/client-go" {print $2}' "$go_mod")"  # v0.<minor>.<patch>
  minor="$(cut -d. -f2 <<<"$client_go")"
  [[ "$minor" =~ ^[0-9]+$ ]] || { echo "install-tools: no client-go version in $go_mod" >&2; exit 1; }
  local flags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
  flags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  local pkg
  for pkg in pkg/chartutil pkg/lint/rules; do
    flags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$minor"
  done
  echo "$flags"
}
tools=("$@")
((${#tools[@]})) || tools=(helm kubeconform actionlint kube-score vegeta)
PATH="$("$root/scripts/go-env.sh"):$PATH"  # a Go new enough (the one on PATH, else from the module proxy)
for tool in "${tools[@]}"; do
  module="${modules[$tool]:?unknown tool $tool}"
  stamp="$bin/.$tool.version"
  ldflags=""
  [[ "$tool" != helm ]] || ldflags="$(helm_ldflags)"
  if [[ -x "$bin/$tool" && "$(cat "$stamp" 2>/dev/null)" == "$module $ldflags" ]]; then continue; fi
  echo "install-tools: go install $module" >&2
  GOBIN="$bin" GOFLAGS=-buildvcs=false go install -ldflags "$ldflags" "$module" >&2
  echo "$module $ldflags" >"$stamp"
done
echo "$bin"
