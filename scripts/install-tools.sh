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
tools=("$@")
((${#tools[@]})) || tools=(helm kubeconform actionlint kube-score vegeta)
command -v go >/dev/null || { echo "install-tools: needs Go (apt-get install golang-go, or go.dev)" >&2; exit 1; }
for tool in "${tools[@]}"; do
  module="${modules[$tool]:?unknown tool $tool}"
  stamp="$bin/.$tool.version"
  if [[ -x "$bin/$tool" && "$(cat "$stamp" 2>/dev/null)" == "$module" ]]; then continue; fi
  echo "install-tools: go install $module" >&2
  GOBIN="$bin" GOFLAGS=-buildvcs=false go install "$module" >&2
  echo "$module" >"$stamp"
done
echo "$bin"
