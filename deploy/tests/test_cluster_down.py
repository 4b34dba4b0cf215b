"""`scripts/cluster.sh down`, twice, leaves nothing of the cluster on the machine: no process,
mount, network namespace, link, route, iptables rule or chain, cgroup or state folder, and the
kernel settings the kubelet changed are back to what they were before `up`. Runs last in
`scripts/test-all.sh cluster`: it takes the cluster down."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from clusterlib import ENV, STATE, cluster_script

CACHE_BIN = Path(ENV["PATH"].split(":")[0])  # the first PATH entry of `cluster.sh env`: the built binaries


def processes_of_the_cluster(netns_inode: int | None) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            in_netns = netns_inode is not None and os.stat(f"/proc/{pid}/ns/net").st_ino == netns_inode
        except OSError:
            continue  # gone meanwhile, or a kernel thread
        if exe.startswith(str(CACHE_BIN)) or str(STATE) in cmdline or in_netns:
            found.append(f"{pid} {cmdline[:120]}")
    return found


def sysctl(name: str) -> str:
    return Path("/proc/sys", *name.split(".")).read_text().strip().replace("\t", " ")


def test_down_twice_leaves_nothing():
    assert STATE.is_dir(), "the cluster should be up before this test"
    netns_inode = os.stat(STATE / "netns").st_ino
    saved = dict(line.strip().split("=", 1) for line in (STATE / "host-sysctls").read_text().splitlines())
    assert len(saved) == 6, saved
    pods = subprocess.run(["grep", "-c", str(STATE), "/proc/self/mountinfo"], capture_output=True, text=True).stdout
    # containerd 1.6's shim sockets: /run/containerd/s/<sha256 of "<containerd socket>/k8s.io/<task id>">.
    tasks = STATE / "containerd" / "state" / "io.containerd.runtime.v2.task" / "k8s.io"
    sock = STATE / "containerd" / "containerd.sock"
    shim_sockets = [Path("/run/containerd/s") / hashlib.sha256(f"{sock}/k8s.io/{t.name}".encode()).hexdigest()
                    for t in tasks.iterdir()]
    assert any(p.exists() for p in shim_sockets), "the shim sockets are not where containerd 1.6 puts them"
    print(f"before down: {len(processes_of_the_cluster(netns_inode))} processes of the cluster, "
          f"{pods.strip()} mounts under its state folder, kubelet's sysctls {dict((k, sysctl(k)) for k in saved)}")

    first = cluster_script("down", timeout=300)
    second = cluster_script("down", timeout=300)
    assert "nothing of the cluster is left" in first.stderr and "nothing of the cluster is left" in second.stderr
    assert "warning" not in first.stderr + second.stderr, first.stderr + second.stderr

    assert processes_of_the_cluster(netns_inode) == []
    mountinfo = Path("/proc/self/mountinfo").read_text()
    assert str(STATE) not in mountinfo and f"net:[{netns_inode}]" not in mountinfo
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert "celsius-host" not in links
    assert not [p for p in shim_sockets if p.exists()], "a killed shim's socket was left in /run/containerd/s"
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout
    assert "10.213." not in routes, routes
    for table in ("filter", "nat", "mangle", "raw"):
        rules = subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True,
                               check=True).stdout
        assert "celsius-cluster" not in rules and "CELSIUS-" not in rules, rules
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        assert not (hierarchy / "celsius-cluster").exists(), hierarchy
    assert not STATE.exists()
    restored = {name: sysctl(name) for name in saved}
    assert restored == saved
    print(f"after down twice: no process, mount, link, route, iptables rule, cgroup or state left; "
          f"sysctls restored {restored}")
