#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, for the project's tests and runs.
#
#   scripts/cluster.sh build               build and cache the binaries and system images
#   scripts/cluster.sh build-binaries      the Go and C builds only (no packages, Docker or Helm)
#   scripts/cluster.sh up                  build if needed, then start the cluster (idempotent)
#   scripts/cluster.sh down                stop it and remove everything it made (safe to repeat)
#   scripts/cluster.sh status              what runs, the node, the system pods
#   scripts/cluster.sh load-images [IMG..] docker save | ctr import (default: the project's images;
#                                          skips those already imported with the same Docker ID)
#   scripts/cluster.sh env                 exports for kubectl and helm: eval "$(scripts/cluster.sh env)"
#   scripts/cluster.sh kubectl ARGS...     kubectl against the cluster
#   scripts/cluster.sh exec CMD...         a command inside the node's network namespace
#
# Every component is a host process, as in Kubernetes' own hack/local-up-cluster.sh:
# etcd, containerd, runc and the CNI plugins from Debian; kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl built from
# k8s.io/kubernetes (deploy/cluster/build/), metrics-server from its module, CoreDNS with the
# plugins the cluster uses (deploy/cluster/coredns/),
# the pause image from Kubernetes' pause.c. Built once per machine and cached outside the
# clone: $CELSIUS_CACHE_DIR (default ${XDG_CACHE_HOME:-~/.cache}/celsius)/k8s-v<version>/.
#
# Network: the node is a network namespace that this script creates (like a kind node),
# joined to the host by a veth pair: host 10.213.0.1, node 10.213.0.2 (/30); pods
# 10.213.1.0/24, Services 10.213.2.0/24 (DNS 10.213.2.10). The apiserver and NodePorts
# answer at the node address only. Nothing can leave the machine: the namespace has no
# default route, the pod bridge does no masquerading, a DROP rule (raw table, before routing)
# stops every packet from the pod or Service ranges to anything but the pod, Service and node
# addresses, the host drops anything forwarded from or to the veth, and CoreDNS has no
# `forward`. containerd sends every registry to a closed local port.
#
# State (certificates, etcd, containerd's images, logs): $CELSIUS_CLUSTER_DIR (default
# /var/lib/celsius-cluster), removed by `down`. `down` stops every process by PID (those it
# started and everything in the cluster's cgroup), unmounts, deletes the namespace, removes
# the cgroups and the host's FORWARD rules, restores the kernel settings the kubelet changes
# (vm.overcommit_memory, vm.panic_on_oom, kernel.panic, kernel.panic_on_oops,
# kernel.keys.root_maxkeys, kernel.keys.root_maxbytes) and deletes the state folder. Left
# after `down`: the build cache and the Debian packages installed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cluster_dir="$root/deploy/cluster"

# ----------------------------------------------------------------------------- settings
k8s_version=1.34.2
metrics_server_version=v0.8.0
coredns_version=v1.12.4
pause_version=3.10.1
cache="${CELSIUS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/celsius}/k8s-v$k8s_version"
bin="$cache/bin"
state="${CELSIUS_CLUSTER_DIR:-/var/lib/celsius-cluster}"
kubeconfig="$state/admin.kubeconfig"
sock="$state/containerd/containerd.sock"
netns="$state/netns"

node_name=celsius-node
host_if=celsius-host
node_if=eth0
host_ip=10.213.0.1
node_ip=10.213.0.2
link_prefix=30
pod_cidr=10.213.1.0/24
pod_gateway=10.213.1.1
pod_bridge=celsius0
service_cidr=10.213.2.0/24
kubernetes_ip=10.213.2.1
dns_ip=10.213.2.10
all_ranges=10.213.0.0/22
cgroup_name=celsius-cluster
image_prefix=celsius.local
pause_image="$image_prefix/pause:$pause_version"
coredns_image="$image_prefix/coredns:$coredns_version"
metrics_server_image="$image_prefix/metrics-server:$metrics_server_version"
# What the kubelet sets at start (pkg/kubelet/cm/container_manager_linux.go, setupKernelTunables).
kubelet_sysctls=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# Started in this order, stopped in the reverse order.
daemons=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet)
packages=(containerd runc etcd-server containernetworking-plugins iptables openssl gcc libc6-dev
  gettext-base util-linux iproute2)
k8s_commands=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

lock_file="${cache%/*}/cluster.lock"
ticker_pid=""         # the build's progress printer, if one runs
up_in_progress=0      # 1 while `up` starts things: a failure or a signal then takes them down
on_exit() {
  local code=$?
  [[ -z "$ticker_pid" ]] || kill "$ticker_pid" 2>/dev/null || true
  if ((up_in_progress)); then
    up_in_progress=0
    log "up failed (exit $code): taking the cluster down; the components' last log lines:"
    tail_logs
    down_locked
  fi
  exit "$code"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
in_node() { nsenter --net="$netns" -- "$@"; }
kctl() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }

# Waits until a command succeeds: wait_for DESCRIPTION SECONDS COMMAND...
wait_for() {
  local what="$1" seconds="$2" started=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - started < seconds)) || { log "timed out after ${seconds} s waiting for $what"; return 1; }
    sleep 1
  done
  log "$what ($((SECONDS - started)) s)"
}

# One `up` or `down` at a time on this machine (CI may run beside a developer's session).
take_lock() {
  mkdir -p "${lock_file%/*}"
  exec 9>"$lock_file"
  flock 9
}

need_root() { ((EUID == 0)) || die "needs root (network namespaces, cgroups, mounts)"; }

# ------------------------------------------------------------------------------- install
install_packages() {
  local missing=() p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --------------------------------------------------------------------------------- build
# Each artefact has a stamp file holding what it was built from; a different input rebuilds.
stamp_ok() { [[ -e "$1" && -f "$1.stamp" && "$(cat "$1.stamp")" == "$2" ]]; }

# go_build NAME KEY COMMAND...: runs a Go build, printing progress (packages compiled, time)
# every 30 s: the first build takes minutes (kube-apiserver alone about 10 on 2 busy cores).
go_build() {
  local name="$1" key="$2" out="$bin/$1" started=$SECONDS ticker
  shift 2
  if stamp_ok "$out" "$key"; then return 0; fi
  log "building $name (${key%% *}; the first build of each takes minutes)"
  local build_log="$cache/build-logs/$name.log"
  mkdir -p "$cache/build-logs"
  : >"$build_log"
  (while sleep 30; do
    log "  ... $name: $(grep -cv '^go: ' "$build_log" || true) packages compiled, $((SECONDS - started)) s"
  done) &
  ticker_pid=$!
  if ! CGO_ENABLED=0 GOFLAGS=-buildvcs=false nice -n 10 "$@" >>"$build_log" 2>&1; then
    tail -30 "$build_log" >&2
    die "building $name failed (log: $build_log)"
  fi
  kill "$ticker_pid" 2>/dev/null || true
  wait "$ticker_pid" 2>/dev/null || true
  ticker_pid=""
  printf '%s' "$key" >"$out.stamp"
  log "built $name in $((SECONDS - started)) s"
}

# The system images (pause, CoreDNS, metrics-server) as `docker save` archives in the cache.
build_image() {  # name, tag, binary
  local name="$1" tag="$2" binary="$3" archive="$cache/images/$1.tar" context
  local key
  key="$tag $(sha256sum "$binary" "$cluster_dir/images/$name/Dockerfile" | cut -c1-64 | tr '\n' ' ')"
  if stamp_ok "$archive" "$key"; then return 0; fi
  docker info >/dev/null 2>&1 || "$root/scripts/docker-engine.sh" >&2
  context="$(mktemp -d)"
  cp "$binary" "$cluster_dir/images/$name/Dockerfile" "$context/"
  mkdir -p "$cache/images"
  if ! DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$context" >"$context/build.log" 2>&1; then
    cat "$context/build.log" >&2
    die "docker build of $tag failed"
  fi
  rm -rf "$context"
  docker save -o "$archive" "$tag"
  printf '%s' "$key" >"$archive.stamp"
  log "image $tag ($(du -m "$archive" | cut -f1) MB)"
}

build_binaries() {
  PATH="$("$root/scripts/go-env.sh"):$PATH" || die "no Go toolchain (scripts/go-env.sh)"
  mkdir -p "$bin"
  local go_version ldflags
  go_version="$(go env GOVERSION)"
  # The version Kubernetes' own build stamps (hack/lib/version.sh).
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$k8s_version"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=${k8s_version%%.*}"
  ldflags+=" -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$k8s_version")"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=v$k8s_version"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=${k8s_version%%.*}"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitMinor=$(cut -d. -f2 <<<"$k8s_version")"
  local module_sum c
  module_sum="$(cat "$cluster_dir/build/go.mod" "$cluster_dir/build/go.sum" | sha256sum | cut -c1-16)"
  for c in "${k8s_commands[@]}"; do
    go_build "$c" "k8s.io/kubernetes/cmd/$c@v$k8s_version $module_sum $go_version" \
      go build -C "$cluster_dir/build" -v -tags tools -ldflags "$ldflags" -o "$bin/$c" "k8s.io/kubernetes/cmd/$c"
  done
  go_build metrics-server "sigs.k8s.io/metrics-server@$metrics_server_version $go_version" \
    env GOBIN="$bin" go install -v -ldflags "-s -w" "sigs.k8s.io/metrics-server/cmd/metrics-server@$metrics_server_version"
  # CoreDNS with the plugins the cluster's Corefile uses only (deploy/cluster/coredns/main.go).
  local coredns_sum
  coredns_sum="$(cat "$cluster_dir/coredns/go.mod" "$cluster_dir/coredns/go.sum" "$cluster_dir/coredns/main.go" \
    | sha256sum | cut -c1-16)"
  grep -q "github.com/coredns/coredns $coredns_version\$" "$cluster_dir/coredns/go.mod" \
    || die "deploy/cluster/coredns/go.mod does not require CoreDNS $coredns_version"
  go_build coredns "github.com/coredns/coredns@$coredns_version $coredns_sum $go_version" \
    go build -C "$cluster_dir/coredns" -v -ldflags "-s -w" -o "$bin/coredns" .
  # The pause image's program: Kubernetes' own build/pause/linux/pause.c, as its Makefile builds it.
  local pause_c
  pause_c="$(go env GOMODCACHE)/k8s.io/kubernetes@v$k8s_version/build/pause/linux/pause.c"
  [[ -f "$pause_c" ]] || go mod download -C "$cluster_dir/build" "k8s.io/kubernetes"
  if ! stamp_ok "$bin/pause" "$pause_version $(sha256sum "$pause_c" | cut -c1-64)"; then
    gcc -Os -Wall -Werror -static -DVERSION="v$pause_version" -o "$bin/pause" "$pause_c"
    printf '%s' "$pause_version $(sha256sum "$pause_c" | cut -c1-64)" >"$bin/pause.stamp"
    log "built pause"
  fi
}

build() {
  install_packages
  build_binaries
  build_image pause "$pause_image" "$bin/pause"
  build_image coredns "$coredns_image" "$bin/coredns"
  build_image metrics-server "$metrics_server_image" "$bin/metrics-server"
  "$root/scripts/install-tools.sh" helm >/dev/null
  log "build: all cached in $cache"
}

# ----------------------------------------------------------------------- cgroups, PIDs
# The cgroup hierarchies of this machine (v1: one per controller; v2: one unified).
cgroup_hierarchies() {
  awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts
}
# Where the cluster's processes are counted: the v1 pids hierarchy, or the v2 one.
process_cgroup() {
  if [[ -d /sys/fs/cgroup/pids ]]; then echo "/sys/fs/cgroup/pids/$cgroup_name"
  else echo "/sys/fs/cgroup/$cgroup_name"; fi
}
cluster_pids() {
  local dir
  dir="$(process_cgroup)"
  [[ -d "$dir" ]] || return 0
  find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un
}

make_cgroups() {
  local h
  for h in $(cgroup_hierarchies); do
    [[ "$h" == /sys/fs/cgroup/unified ]] && continue  # hybrid hosts: the kubelet uses v1
    mkdir -p "$h/$cgroup_name/system"
    if [[ -f "$h/cpuset.cpus" ]]; then  # a new v1 cpuset is empty until given CPUs and nodes
      for f in cpuset.cpus cpuset.mems; do
        cat "$h/$f" >"$h/$cgroup_name/$f"
        cat "$h/$f" >"$h/$cgroup_name/system/$f"
      done
    fi
    if [[ -f "$h/cgroup.subtree_control" ]]; then  # v2: hand the controllers down
      local c
      for c in $(cat "$h/cgroup.controllers"); do
        echo "+$c" >"$h/$cgroup_name/cgroup.subtree_control" 2>/dev/null || true
      done
    fi
  done
}

remove_cgroups() {
  local h
  for h in $(cgroup_hierarchies); do
    [[ -d "$h/$cgroup_name" ]] || continue
    find "$h/$cgroup_name" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ ! -d "$h/$cgroup_name" ]] || log "warning: $h/$cgroup_name still exists"
  done
}

# start NAME COMMAND...: a daemon in the node's network namespace and the cluster's cgroup,
# in its own session (a Ctrl-C at the caller's terminal does not reach it). Its PID and
# executable are recorded in $state/pids/NAME.
start() {
  local name="$1" pid
  shift
  local cgroup_procs
  cgroup_procs="$(process_cgroup)/system/cgroup.procs"
  local exe
  exe="$(command -v "$1")"
  setsid sh -c 'echo $$ >"$1"; netns="$2"; shift 2; exec nsenter --net="$netns" -- "$@"' \
    sh "$cgroup_procs" "$netns" "$@" \
    </dev/null >"$state/logs/$name.log" 2>&1 9>&- &
  pid=$!
  echo "$pid $exe" >"$state/pids/$name"
}

# The PID of a daemon if it is still the process that was started.
daemon_pid() {
  local file="$state/pids/$1" pid exe
  [[ -f "$file" ]] || return 1
  read -r pid exe <"$file"
  [[ -n "$pid" && "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$(readlink -f "$exe")" ]] || return 1
  echo "$pid"
}

stop_daemon() {  # name, seconds to wait after SIGTERM
  local pid i
  pid="$(daemon_pid "$1")" || { rm -f "$state/pids/$1"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < $2 * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$state/pids/$1"
}

# Folders outside the state folder that containerd, the kubelet or the CNI library create
# (fixed paths in their code): those missing before `up` are removed by `down`, and in any
# case what the cluster put there (its shim sockets, log links, CNI results) goes.
outside_dirs=(/run/containerd /var/log/containers /var/lib/cni)
note_outside_dirs() {
  local dir
  for dir in "${outside_dirs[@]}"; do
    [[ -e "$dir" ]] || echo "$dir" >>"$state/created-dirs"
  done
}
clean_outside_dirs() {
  find /var/log/containers -maxdepth 1 -type l -lname "$state/*" -delete 2>/dev/null || true
  # The CNI library's result cache: <network>-<sandbox id>-<interface> for the pod network
  # (celsius) and containerd's loopback network (cni-loopback) of each of our pod sandboxes.
  rm -f /var/lib/cni/results/celsius-* 2>/dev/null || true
  # containerd 1.6's shims listen on /run/containerd/s/<sha256 of "<containerd socket>/<namespace>/<id>">
  # (runtime/v2/shim/util_unix.go, SocketAddress); a killed shim leaves its socket behind.
  local task
  for task in "$state"/containerd/state/io.containerd.runtime.v2.task/k8s.io/*; do
    [[ -d "$task" ]] || continue
    rm -f "/run/containerd/s/$(printf '%s' "$sock/k8s.io/$(basename "$task")" | sha256sum | cut -c1-64)"
  done
  local sandbox
  for sandbox in "$state"/containerd/root/io.containerd.grpc.v1.cri/sandboxes/*; do
    [[ -d "$sandbox" ]] || continue
    rm -f /var/lib/cni/results/*-"$(basename "$sandbox")"-* 2>/dev/null || true
  done
  [[ -f "$state/created-dirs" ]] || return 0
  local dir
  while read -r dir; do
    [[ -d "$dir" ]] || continue
    find "$dir" -depth -type d -empty -delete 2>/dev/null || true
    [[ ! -e "$dir" ]] || log "note: $dir (made during the cluster's life) holds files of others: left in place"
  done <"$state/created-dirs"
}

# ------------------------------------------------------------------------------ network
check_address_plan() {
  local clash
  clash="$( { ip -4 route show root "$all_ranges"; ip -4 route show match "$all_ranges" | grep -v '^default'; } \
    | grep -v " dev $host_if " | grep -v "^unreachable $all_ranges" || true)"
  [[ -z "$clash" ]] || die "the cluster's addresses ($all_ranges) overlap this machine's routes: $clash"
}

make_network() {
  touch "$netns"
  unshare --net="$netns" true
  ip link add "$host_if" type veth peer name "$node_if" netns "$netns"
  sysctl -qw "net.ipv6.conf.$host_if.disable_ipv6=1"
  ip addr add "$host_ip/$link_prefix" dev "$host_if"
  ip link set "$host_if" up
  in_node sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  in_node ip addr add "$node_ip/$link_prefix" dev "$node_if"
  in_node ip link set lo up
  in_node ip link set "$node_if" up
  # Inside the node (these settings are per network namespace): forward between pods and
  # the node, and let bridged pod traffic pass through iptables (kube-proxy's rules).
  in_node sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  # The egress rule, before any pod exists: anything from the pod or Service ranges to an
  # address outside the pod, Service and node addresses is dropped before routing.
  in_node iptables -w -t raw -N CELSIUS-EGRESS
  local allowed
  for allowed in "$pod_cidr" "$service_cidr" "$node_ip/32"; do
    in_node iptables -w -t raw -A CELSIUS-EGRESS -d "$allowed" -j RETURN
  done
  in_node iptables -w -t raw -A CELSIUS-EGRESS -j DROP
  local chain source
  for chain in PREROUTING OUTPUT; do
    for source in "$pod_cidr" "$service_cidr"; do
      in_node iptables -w -t raw -A "$chain" -s "$source" -j CELSIUS-EGRESS
    done
  done
  # On the host: never forward anything from or to the node (the host may forward for
  # others), and never send anything for the pod or Service ranges anywhere (without this
  # route it would follow the host's default route out of the machine).
  iptables -w -I FORWARD -i "$host_if" -m comment --comment "$cgroup_name" -j DROP
  iptables -w -I FORWARD -o "$host_if" -m comment --comment "$cgroup_name" -j DROP
  ip route add unreachable "$all_ranges"
}

remove_network() {
  local rule
  for rule in "-i $host_if" "-o $host_if"; do
    # shellcheck disable=SC2086  # the rule is two words on purpose
    while iptables -w -D FORWARD $rule -m comment --comment "$cgroup_name" -j DROP 2>/dev/null; do :; done
  done
  while ip route del unreachable "$all_ranges" 2>/dev/null; do :; done
  if [[ -e "$netns" ]]; then
    umount "$netns" 2>/dev/null || true
  fi
  # The veth pair goes with the namespace once no process holds it; make sure.
  local i
  for ((i = 0; i < 50; i++)); do
    ip link show "$host_if" >/dev/null 2>&1 || break
    ((i < 20)) || ip link del "$host_if" 2>/dev/null || true
    sleep 0.1
  done
}

# ---------------------------------------------------------------------- configuration
render() {  # template, destination: fills in the ${VARIABLES} named below, nothing else
  CLUSTER_STATE="$state" NODE_NAME="$node_name" NODE_IP="$node_ip" POD_CIDR="$pod_cidr" \
    POD_GATEWAY="$pod_gateway" POD_BRIDGE="$pod_bridge" DNS_IP="$dns_ip" CGROUP_NAME="$cgroup_name" \
    PAUSE_IMAGE="$pause_image" COREDNS_IMAGE="$coredns_image" METRICS_SERVER_IMAGE="$metrics_server_image" \
    envsubst '${CLUSTER_STATE} ${NODE_NAME} ${NODE_IP} ${POD_CIDR} ${POD_GATEWAY} ${POD_BRIDGE} ${DNS_IP}
      ${CGROUP_NAME} ${PAUSE_IMAGE} ${COREDNS_IMAGE} ${METRICS_SERVER_IMAGE}' <"$1" >"$2"
}

# A CA, the serving and client certificates of each component, and their kubeconfigs.
make_pki() {
  local pki="$state/pki"
  mkdir -p "$pki"
  ca() {
    openssl req -x509 -new -nodes -newkey rsa:2048 -sha256 -days 30 -subj "/CN=$1" \
      -keyout "$pki/$1.key" -out "$pki/$1.crt" 2>/dev/null
  }
  cert() {  # name, ca, subject, [subjectAltName]
    local ext="$pki/$1.ext"
    if [[ -n "${4:-}" ]]; then
      printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$4" >"$ext"
    else
      printf 'extendedKeyUsage=clientAuth\n' >"$ext"
    fi
    openssl req -new -nodes -newkey rsa:2048 -subj "$3" -keyout "$pki/$1.key" -out "$pki/$1.csr" 2>/dev/null
    openssl x509 -req -sha256 -days 30 -in "$pki/$1.csr" -CA "$pki/$2.crt" -CAkey "$pki/$2.key" \
      -CAcreateserial -extfile "$ext" -out "$pki/$1.crt" 2>/dev/null
    rm -f "$pki/$1.csr" "$ext"
  }
  ca ca
  ca front-proxy-ca
  cert apiserver ca "/CN=kube-apiserver" "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:$node_name,IP:127.0.0.1,IP:$kubernetes_ip,IP:$node_ip"
  cert apiserver-kubelet-client ca "/O=system:masters/CN=kube-apiserver-kubelet-client"
  cert admin ca "/O=system:masters/CN=kubernetes-admin"
  cert controller-manager ca "/CN=system:kube-controller-manager"
  cert scheduler ca "/CN=system:kube-scheduler"
  cert kube-proxy ca "/CN=system:kube-proxy"
  cert kubelet ca "/O=system:nodes/CN=system:node:$node_name"
  cert front-proxy-client front-proxy-ca "/CN=front-proxy-client"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  local user
  for user in admin controller-manager scheduler kube-proxy kubelet; do
    cat >"$state/$user.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: celsius
    cluster: {certificate-authority: $pki/ca.crt, server: "https://$node_ip:6443"}
users:
  - name: $user
    user: {client-certificate: $pki/$user.crt, client-key: $pki/$user.key}
contexts:
  - name: celsius
    context: {cluster: celsius, user: $user}
current-context: celsius
EOF
  done
}

make_config() {
  mkdir -p "$state/cni/net.d" "$state/containerd/certs.d"
  render "$cluster_dir/config/containerd.toml" "$state/containerd.toml"
  render "$cluster_dir/config/cni.conflist" "$state/cni/net.d/10-celsius.conflist"
  render "$cluster_dir/config/kubelet.yaml" "$state/kubelet.yaml"
  render "$cluster_dir/config/kube-proxy.yaml" "$state/kube-proxy.yaml"
  local registry
  for registry in _default docker.io registry-1.docker.io registry.k8s.io k8s.gcr.io gcr.io ghcr.io \
    quay.io public.ecr.aws mcr.microsoft.com "$image_prefix" localhost; do
    mkdir -p "$state/containerd/certs.d/$registry"
    cp "$cluster_dir/config/hosts.toml" "$state/containerd/certs.d/$registry/hosts.toml"
  done
  make_pki
}

# ------------------------------------------------------------------------------ up/down
is_up() {
  local d
  for d in "${daemons[@]}"; do daemon_pid "$d" >/dev/null || return 1; done
  kctl get --raw /readyz >/dev/null 2>&1
}

import_archive() {  # archive file or "-" (stdin)
  ctr -a "$sock" -n k8s.io images import "$1" >/dev/null
}

up() {
  need_root
  take_lock
  if is_up; then
    log "already up"
    status_short
    return 0
  fi
  if [[ -e "$state" ]] || ip link show "$host_if" >/dev/null 2>&1; then
    log "a previous cluster was not taken down cleanly: down first"
    down_locked
  fi
  check_address_plan
  build
  local started=$SECONDS
  up_in_progress=1
  mkdir -p "$state/logs" "$state/pids" "$state/etcd"
  chmod 700 "$state/etcd"
  # The kubelet changes these machine-wide settings: `down` puts them back.
  sysctl "${kubelet_sysctls[@]}" | sed 's/ = /=/' >"$state/host-sysctls"
  note_outside_dirs
  make_cgroups
  make_network
  make_config
  log "network namespace, veth $host_if ($host_ip) <-> node $node_ip, egress rule, configuration ready"

  start containerd containerd --config "$state/containerd.toml"
  wait_for "containerd answers" 60 ctr -a "$sock" version
  local image
  for image in pause coredns metrics-server; do import_archive "$cache/images/$image.tar"; done
  log "system images imported"

  start etcd etcd --name "$node_name" --data-dir "$state/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$node_name=http://127.0.0.1:2380"
  local pki="$state/pki"
  start kube-apiserver "$bin/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
    --advertise-address="$node_ip" --bind-address=0.0.0.0 --secure-port=6443 \
    --service-cluster-ip-range="$service_cidr" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --requestheader-client-ca-file="$pki/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$pki/front-proxy-client.crt" --proxy-client-key-file="$pki/front-proxy-client.key" \
    --enable-aggregator-routing=true
  wait_for "kube-apiserver ready" 180 kctl get --raw /readyz
  start kube-controller-manager "$bin/kube-controller-manager" --kubeconfig="$state/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$state/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$state/controller-manager.kubeconfig" --bind-address=127.0.0.1 \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
    --use-service-account-credentials --leader-elect=false --service-cluster-ip-range="$service_cidr"
  start kube-scheduler "$bin/kube-scheduler" --kubeconfig="$state/scheduler.kubeconfig" \
    --authentication-kubeconfig="$state/scheduler.kubeconfig" --authorization-kubeconfig="$state/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false
  start kube-proxy "$bin/kube-proxy" --config="$state/kube-proxy.yaml"
  start kubelet "$bin/kubelet" --config="$state/kubelet.yaml" --kubeconfig="$state/kubelet.kubeconfig" \
    --hostname-override="$node_name" --node-ip="$node_ip" --root-dir="$state/kubelet"
  wait_for "node $node_name Ready" 180 kctl wait --for=condition=Ready "node/$node_name" --timeout=2s
  wait_for "default service account" 60 kctl -n default get serviceaccount default
  local manifest
  for manifest in coredns metrics-server; do
    render "$cluster_dir/manifests/$manifest.yaml" "$state/$manifest.yaml"
    kctl apply -f "$state/$manifest.yaml" >/dev/null
  done
  wait_for "CoreDNS ready" 180 kctl -n kube-system rollout status deployment/coredns --timeout=2s
  wait_for "metrics API serving" 240 kctl get --raw /apis/metrics.k8s.io/v1beta1/nodes/"$node_name"
  up_in_progress=0
  log "up in $((SECONDS - started)) s: kubectl at https://$node_ip:6443 (eval \"\$(scripts/cluster.sh env)\")"
}

tail_logs() {
  local f
  for f in "$state"/logs/*.log; do
    [[ -f "$f" ]] || continue
    echo "----- $(basename "$f") (last lines)" >&2
    tail -5 "$f" >&2
  done
}

# Mount points under the state folder, deepest first (octal escapes of /proc decoded).
state_mounts() {
  awk -v prefix="$state/" 'index($5, prefix) == 1 || $5 == prefix "netns" {print $5}' /proc/self/mountinfo \
    | while read -r m; do printf '%b\n' "$m"; done | sort -r
}

down_locked() {
  local i d started=$SECONDS
  # The kubelet first, so that it restarts nothing; the control plane after it.
  for ((i = ${#daemons[@]} - 1; i >= 0; i--)); do
    d="${daemons[i]}"
    [[ ! -d "$state/pids" ]] || stop_daemon "$d" "$([[ "$d" == kubelet ]] && echo 5 || echo 2)"
  done
  # Everything else the cluster ran (containers, shims): every PID in its cgroup.
  for ((i = 0; i < 100; i++)); do
    local pids
    pids="$(cluster_pids)"
    [[ -n "$pids" ]] || break
    # shellcheck disable=SC2086  # one PID per word
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  [[ -z "$(cluster_pids)" ]] || log "warning: processes left in the cluster's cgroup: $(cluster_pids | tr '\n' ' ')"
  log "processes stopped ($((SECONDS - started)) s)"
  for ((i = 0; i < 5; i++)); do
    local mounts
    mounts="$(state_mounts)"
    [[ -n "$mounts" ]] || break
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done <<<"$mounts"
  done
  remove_network
  if [[ -f "$state/host-sysctls" ]]; then
    local setting
    while read -r setting; do sysctl -qw "$setting" || log "warning: could not restore $setting"; done <"$state/host-sysctls"
  fi
  remove_cgroups
  clean_outside_dirs
  log "network, mounts, cgroups and settings removed ($((SECONDS - started)) s); deleting $state"
  rm -rf "$state"
  log "down: nothing of the cluster is left ($((SECONDS - started)) s)"
}

down() {
  need_root
  take_lock
  down_locked
}

status_short() {
  kctl get nodes -o wide
  kctl get pods -A -o wide
}

status() {
  if [[ ! -e "$state" ]]; then
    echo "down"
    return 3
  fi
  local d pid
  for d in "${daemons[@]}"; do
    if pid="$(daemon_pid "$d")"; then echo "$d: running (pid $pid)"; else echo "$d: NOT running"; fi
  done
  echo "node address $node_ip (host side $host_ip on $host_if); kubeconfig $kubeconfig"
  is_up || { echo "not ready"; return 1; }
  status_short
}

# docker save | ctr import for each image (default: the project's images at its version).
load_images() {
  need_root
  is_up || die "the cluster is not up (scripts/cluster.sh up)"
  local images=("$@") version image started
  if ((${#images[@]} == 0)); then
    version="$(sed -nE 's/^project\(celsius VERSION ([0-9.]+).*/\1/p' "$root/CMakeLists.txt")"
    images=("celsius/server:$version" "celsius/model-server:$version" "celsius/model:$version"
      "celsius/loadtest:$version")
  fi
  "$root/scripts/docker-engine.sh" >&2
  mkdir -p "$state/imported"
  local id record imported
  imported="$(ctr -a "$sock" -n k8s.io images ls -q)"
  for image in "${images[@]}"; do
    started=$SECONDS
    id="$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null)" || die "no image $image (scripts/build-images.sh)"
    # An image this cluster already holds with the same Docker ID is not imported again (the
    # record lives in the state folder, so it goes with the cluster).
    record="$state/imported/${image//[\/:]/_}"
    if [[ -f "$record" && "$(cat "$record")" == "$id" ]] && grep -qxF "docker.io/$image" <<<"$imported"; then
      log "$image: already imported (${id:7:12})"
      continue
    fi
    docker save "$image" | import_archive -
    printf '%s' "$id" >"$record"
    log "imported $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}'), $((SECONDS - started)) s)"
  done
}

env_exports() {
  printf 'export KUBECONFIG=%q\n' "$kubeconfig"
  printf 'export PATH=%q:%q:"$PATH"\n' "$bin" "$root/.tools/bin"
  printf 'export CELSIUS_NODE_IP=%q\n' "$node_ip"
}

case "${1:-}" in
  build) build ;;
  build-binaries) build_binaries ;;
  up) up ;;
  down) down ;;
  status) status ;;
  load-images) shift; load_images "$@" ;;
  env) env_exports ;;
  kubectl) shift; kctl "$@" ;;
  exec) shift; need_root; in_node "$@" ;;
  *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
