"""`sinfo`: what each node of each partition has free now, one argv and one parser.

The spawn page reads the free CPUs, memory and GPUs per partition; the local cluster's
checks read whether its node is usable. Both come from the same per-node lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .runner import Failed

# One line per (partition, node); '|' after each field so that nothing is padded or cut.
SINFO_ARGV = ["sinfo", "--noheader", "--Node", "--Format",
              "PartitionName:0|,NodeHost:0|,StateCompact:0|,CPUsState:0|,Gres:0|,GresUsed:0|,AllocMem:0|,Memory:0|"]
_GPU = re.compile(r"^gpu(?::[^:(,]+)?:(\d+)")
# StateCompact words of a node that takes no job now.
_UNUSABLE = ("down", "drain", "drng", "fail", "maint", "inval", "futr", "unk", "npc", "boot", "powered", "pow")


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
        """Whether the node takes jobs (not down, drained, failing or booting)."""
        return not any(word in self.state.lower() for word in _UNUSABLE)

    @property
    def idle(self) -> bool:
        return self.state.rstrip("*~#!%$@^-").lower() == "idle"


@dataclass(frozen=True)
class PartitionState:
    """What is free in a partition now (usable nodes only)."""

    name: str
    nodes: int = 0
    idle_nodes: int = 0
    idle_cpus: int = 0
    cpus: int = 0
    free_memory_mib: int = 0
    free_gpus: int = 0
    gpus: int = 0


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
    """`SINFO_ARGV` output -> {partition: PartitionState}; nodes down, drained or failing count as absent."""
    totals: dict[str, dict[str, int]] = {}
    for node in parse_sinfo_nodes(text):
        total = totals.setdefault(node.partition, dict.fromkeys(
            ("nodes", "idle_nodes", "idle_cpus", "cpus", "free_memory_mib", "free_gpus", "gpus"), 0))
        if not node.usable:
            continue
        total["nodes"] += 1
        total["idle_nodes"] += node.idle
        total["idle_cpus"] += node.idle_cpus
        total["cpus"] += node.cpus
        total["free_memory_mib"] += node.free_memory_mib
        total["gpus"] += node.gpus
        total["free_gpus"] += max(node.gpus - node.gpus_used, 0)
    return {name: PartitionState(name=name, **values) for name, values in totals.items()}
