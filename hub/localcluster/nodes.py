"""The local cluster's compute nodes as Linux namespaces on a private bridge (the I/O edge).

A node is a network namespace with its own address on the bridge (`ip netns`), in
which its slurmd runs in a UTS namespace of its own (the node's hostname) and a
mount namespace whose /tmp is the node's own (node-local scratch). Homes, the
shared environment, the exchange and the courses are the host's file system,
as a centre's nodes share a parallel file system. The login node is this
machine: it holds the bridge's first address. Only loopback and these
addresses are ever contacted.

Taking a node down is a power cut: its link goes down and every process in its
namespace is killed, slurmd and the jobs with it. Slurm notices on its own.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Callable

from aifactory.site.schema import Site

from .slurmconf import ComputeNode, Layout, compute_nodes
from .system import ProvisionError, pid_from, run, stop_pid, wait_for

Say = Callable[[str], None]
HOSTS = Path("/etc/hosts")
HOSTS_BEGIN = "# aifactory compute nodes: managed by `aifactory cluster up`, removed by `down`\n"
HOSTS_END = "# end of aifactory compute nodes\n"


def node_dir(node: ComputeNode, layout: Layout) -> Path:
    return Path(layout.state) / "nodes" / node.name


def slurmd_pidfile(node: ComputeNode, layout: Layout) -> str:
    return layout.pidfile(f"slurmd-{node.name}")


# --- the network ---------------------------------------------------------------


def _links() -> set[str]:
    return {line.split(":")[1].strip().split("@")[0]
            for line in run(["ip", "-o", "link", "show"]).stdout.splitlines() if ":" in line}


def namespaces(layout: Layout) -> list[str]:
    """The network namespaces of this cluster's nodes that exist now."""
    listed = run(["ip", "netns", "list"]).stdout.split("\n")
    return [line.split()[0] for line in listed if line.startswith(layout.netns_prefix)]


def ensure_bridge(site: Site, layout: Layout, say: Say) -> None:
    """The nodes' network: a bridge holding the login node's address."""
    assert site.local is not None
    prefix = site.local.network.prefixlen
    if layout.bridge not in _links():
        say(f"creating the nodes' network {site.local.network} on bridge {layout.bridge}")
        run(["ip", "link", "add", layout.bridge, "type", "bridge"])
    address = f"{site.local.login_address}/{prefix}"
    if address not in run(["ip", "-o", "addr", "show", "dev", layout.bridge]).stdout:
        run(["ip", "addr", "add", address, "dev", layout.bridge])
    run(["ip", "link", "set", layout.bridge, "up"])


def ensure_node_network(site: Site, node: ComputeNode, layout: Layout, say: Say) -> None:
    """The node's namespace, its link to the bridge and its address; idempotent."""
    assert site.local is not None
    netns = node.netns(layout)
    if netns not in namespaces(layout):
        say(f"creating node {node.name} ({node.address})")
        run(["ip", "netns", "add", netns])
    if node.link not in _links():
        run(["ip", "link", "add", node.link, "type", "veth", "peer", "name", "eth0", "netns", netns])
    run(["ip", "link", "set", node.link, "master", layout.bridge, "up"])
    inside = ["ip", "-n", netns]
    address = f"{node.address}/{site.local.network.prefixlen}"
    if address not in run([*inside, "-o", "addr", "show", "dev", "eth0"]).stdout:
        run([*inside, "addr", "add", address, "dev", "eth0"])
    run([*inside, "link", "set", "lo", "up"])
    run([*inside, "link", "set", "eth0", "up"])


# --- slurmd ------------------------------------------------------------------


# In the node's own UTS and mount namespaces: its hostname, its /tmp, then slurmd as that node.
# Values travel as arguments ($1, $2), never inside the script.
NODE_INIT = 'hostname "$1" && mount --bind "$2" /tmp && exec /usr/sbin/slurmd -N "$1"'


def slurmd_argv(node: ComputeNode, layout: Layout) -> list[str]:
    """slurmd of one node, in the node's namespaces. (`ip netns exec` would remount /sys, where
    slurmd's cgroup plugin then finds no cgroups; nsenter joins the network namespace only.)"""
    return ["nsenter", f"--net=/run/netns/{node.netns(layout)}", "--",
            "unshare", "--uts", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", NODE_INIT, "node-init", node.name, str(node_dir(node, layout) / "tmp")]


def start_slurmd(node: ComputeNode, layout: Layout, say: Say) -> None:
    if pid_from(slurmd_pidfile(node, layout)) is not None:
        return
    tmp = node_dir(node, layout) / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    os.chmod(tmp, 0o1777)
    Path(layout.slurm_state, f"d-{node.name}").mkdir(parents=True, exist_ok=True)
    say(f"starting slurmd of {node.name}")
    run(slurmd_argv(node, layout))  # slurmd daemonizes, writing its pid file
    if not wait_for(lambda: pid_from(slurmd_pidfile(node, layout)) is not None, 15):
        raise ProvisionError(f"slurmd of {node.name} did not start: see {layout.logfile(f'slurmd-{node.name}')}")


def node_pids(netns: str) -> list[int]:
    """Every process in a node's network namespace: its slurmd, job steps and the jobs' processes."""
    return [int(pid) for pid in run(["ip", "netns", "pids", netns], check=False).stdout.split()]


def _kill_all(netns: str) -> None:
    def gone() -> bool:
        pids = node_pids(netns)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return not pids

    if not wait_for(gone, 15):
        raise ProvisionError(f"processes of {netns} survive SIGKILL: {node_pids(netns)}")


def power_off(node: ComputeNode, layout: Layout, say: Say) -> None:
    """The node fails: its link goes down, then slurmd and every job process on it die at once."""
    say(f"node {node.name}: cutting its link and killing every process on it")
    if node.link in _links():
        run(["ip", "link", "set", node.link, "down"])
    if node.netns(layout) in namespaces(layout):
        _kill_all(node.netns(layout))
    Path(slurmd_pidfile(node, layout)).unlink(missing_ok=True)


def power_on(site: Site, node: ComputeNode, layout: Layout, say: Say) -> None:
    """The node is back: link up, slurmd started; Slurm returns it to service when it registers."""
    ensure_node_network(site, node, layout, say)
    start_slurmd(node, layout, say)


def stop_slurmd(node: ComputeNode, layout: Layout) -> None:
    pid = pid_from(slurmd_pidfile(node, layout))
    if pid is not None:
        stop_pid(pid)


def remove_namespace(netns: str) -> None:
    """A node gone for good: what still runs in it killed, the namespace deleted (its end of the veth
    pair goes with it, and so the host's)."""
    _kill_all(netns)
    run(["ip", "netns", "delete", netns])


def remove_all(layout: Layout, say: Say) -> None:
    """Every node namespace (and what still runs in it), every link and the bridge `up` made."""
    for netns in namespaces(layout):
        say(f"removing node {netns.removeprefix(layout.netns_prefix)}")
        remove_namespace(netns)
    if layout.bridge in _links():
        say(f"removing bridge {layout.bridge}")
        run(["ip", "link", "delete", layout.bridge])
    write_hosts([])


# --- names ---------------------------------------------------------------------


def hosts_text(current: str, lines: list[str]) -> str:
    """/etc/hosts with this cluster's block replaced by `lines` (none: the block removed). Pure."""
    before, _, rest = current.partition(HOSTS_BEGIN)
    _, _, after = rest.partition(HOSTS_END)
    kept = before + (after if rest else "")
    if kept and not kept.endswith("\n"):
        kept += "\n"
    return kept + (HOSTS_BEGIN + "".join(f"{line}\n" for line in lines) + HOSTS_END if lines else "")


def write_hosts(lines: list[str]) -> None:
    """Rewrite /etc/hosts' block in place: in a container it is a bind mount, which a rename cannot replace."""
    current = HOSTS.read_text()
    wanted = hosts_text(current, lines)
    if wanted != current:
        HOSTS.write_text(wanted)


def find(site: Site, name: str) -> ComputeNode:
    nodes = compute_nodes(site)
    for node in nodes:
        if node.name == name:
            return node
    raise ProvisionError(f"no compute node {name!r} (nodes: {', '.join(n.name for n in nodes)})")
