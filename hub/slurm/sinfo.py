"""`sinfo`: what each node of each partition has free now, one argv and one parser.

The spawn page reads, per partition, how many nodes are idle, down or drained and the
free CPUs, memory and GPUs; the local cluster's checks read whether its nodes are usable.
Both come from the same per-node lines: a server or a worker runs on one node, so whether
a request starts now depends on what one node has free, not on the partition's sum.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .runner import Failed

# One line per (partition, node); '|' after each field so that nothing is padded or cut.
SINFO_ARGV = ["sinfo", "--noheader", "--Node", "--Format",
              "PartitionName:0|,NodeHost:0|,StateCompact:0|,CPUsState:0|,Gres:0|,GresUsed:0|,AllocMem:0|,Memory:0|"]
_GPU = re.compile(r"^gpu(?::[^:(,]+)?:(\d+)")
# StateCompact words of a node that takes no job now.
_UNUSABLE = ("down", "drain", "drng", "fail", "maint", "inval", "futr", "unk", "npc", "boot", "powered", "pow")
# A drained (or draining) node was taken out of service by an operator; anything else unusable is down.
_DRAINED = ("drain", "drng")


@dataclass(frozen=True)
class NodeState:
    """One node in one partition, as sinfo lists it."""

    partition: str
    node: str
    state: str  # StateCompact: idle, mix, alloc, down*, drain, ...
    idle_cpus: int
    cpus: int
    free_memory_mib: int
    gpus: int
    gpus_used: int

    @property
    def usable(self) -> bool:
        """Whether the node takes jobs: not down, drained, failing or booting, and answering
        (a trailing '*' is a slurmd that stopped answering: no new work goes there)."""
        return "*" not in self.state and not any(word in self.state.lower() for word in _UNUSABLE)

    @property
    def idle(self) -> bool:
        return self.state.rstrip("*~#!%$@^-").lower() == "idle"

    @property
    def condition(self) -> Literal["idle", "in use", "drained", "down"]:
        """What a user is told about the node."""
        if not self.usable:
            return "drained" if any(word in self.state.lower() for word in _DRAINED) else "down"
        return "idle" if self.idle else "in use"

    @property
    def free_gpus(self) -> int:
        return max(self.gpus - self.gpus_used, 0)


@dataclass(frozen=True)
class PartitionState:
    """A partition now: its nodes counted by condition, and what is free on the usable ones
    (totals, and per node as (idle CPUs, free memory MiB, free GPUs))."""

    name: str
    nodes: int = 0  # usable: idle or in use
    idle_nodes: int = 0
    idle_cpus: int = 0
    cpus: int = 0
    free_memory_mib: int = 0
    free_gpus: int = 0
    gpus: int = 0
    down_nodes: int = 0
    drained_nodes: int = 0
    free_by_node: tuple[tuple[int, int, int], ...] = ()

    def fits(self, cpus: int, memory_mib: int, gpus: int = 0) -> bool:
        """Whether one node has this much free now (a job of one node starts without waiting)."""
        return any(c >= cpus and m >= memory_mib and g >= gpus for c, m, g in self.free_by_node)


def _gpus(gres: str) -> int:
    """'gpu:mi250x:4(S:0-1),tmpdisk:10' -> 4; 'gpu:mi250x:2(IDX:0-1)' -> 2; '(null)' -> 0."""
    return sum(int(m.group(1)) for part in gres.split(",") if (m := _GPU.match(part.strip())))


def parse_sinfo_nodes(text: str) -> list[NodeState]:
    """`SINFO_ARGV` output -> one NodeState per line; a line of another shape raises Failed."""
    nodes = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("|")]
        try:
            partition, node, state, cpus_state, gres, gres_used, alloc_mem, memory = fields[:8]
            _alloc, idle, _other, all_cpus = (int(n) for n in cpus_state.split("/"))
            free_memory = max(int(memory) - int(alloc_mem or 0), 0)
        except ValueError:
            raise Failed(f"sinfo printed a line that is not SINFO_ARGV's: {line.strip()[:120]!r}") from None
        nodes.append(NodeState(partition.rstrip("*"), node, state, idle, all_cpus, free_memory,
                               _gpus(gres), _gpus(gres_used)))
    return nodes


def parse_sinfo(text: str) -> dict[str, PartitionState]:
    """`SINFO_ARGV` output -> {partition: PartitionState}; nodes down or drained are counted as
    such and add nothing free."""
    by_partition: dict[str, list[NodeState]] = {}
    for node in parse_sinfo_nodes(text):
        by_partition.setdefault(node.partition, []).append(node)
    return {name: _partition(name, nodes) for name, nodes in by_partition.items()}


def _partition(name: str, nodes: list[NodeState]) -> PartitionState:
    usable = [n for n in nodes if n.usable]
    conditions = [n.condition for n in nodes]
    return PartitionState(
        name, nodes=len(usable), idle_nodes=conditions.count("idle"),
        idle_cpus=sum(n.idle_cpus for n in usable), cpus=sum(n.cpus for n in usable),
        free_memory_mib=sum(n.free_memory_mib for n in usable),
        free_gpus=sum(n.free_gpus for n in usable), gpus=sum(n.gpus for n in usable),
        down_nodes=conditions.count("down"), drained_nodes=conditions.count("drained"),
        free_by_node=tuple((n.idle_cpus, n.free_memory_mib, n.free_gpus) for n in usable),
    )
