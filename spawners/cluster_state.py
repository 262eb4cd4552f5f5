"""Live facts the spawn page shows: free capacity per partition and each project's allocation use.

Parsers are pure and tested on Slurm's real output; `partition_states` and
`allocation_use` are the I/O edges, cached hub-wide so that a class opening the
spawn page together costs one `sinfo` per few seconds, not one per student.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Awaitable, Callable

from aifactory.site.schema import Site
from aifactory.hub.usage import parse_sacct, sacct_argv, summarize

from . import slurmcli

# One line per (partition, node); '|' after each field so that nothing is padded or cut.
SINFO_ARGV = ["sinfo", "--noheader", "--Node", "--Format",
              "PartitionName:0|,NodeHost:0|,StateCompact:0|,CPUsState:0|,Gres:0|,GresUsed:0|,AllocMem:0|,Memory:0|"]
_GPU = re.compile(r"^gpu(?::[^:(,]+)?:(\d+)")
_UNUSABLE = ("down", "drain", "drng", "fail", "maint", "inval", "futr", "unk", "npc", "boot", "powered", "pow")


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


@dataclass(frozen=True)
class AllocationUse:
    """Core- and GPU-hours a project has used (from accounting) against its allocation (from the site)."""

    account: str
    cpu_hours_used: float
    gpu_hours_used: float
    cpu_hours: int | None = None
    gpu_hours: int | None = None


def _gpus(gres: str) -> int:
    """'gpu:mi250x:4(S:0-1),tmpdisk:10' -> 4; 'gpu:mi250x:2(IDX:0-1)' -> 2; '(null)' -> 0."""
    return sum(int(m.group(1)) for part in gres.split(",") if (m := _GPU.match(part.strip())))


def parse_sinfo(text: str) -> dict[str, PartitionState]:
    """`SINFO_ARGV` output -> {partition: PartitionState}; nodes down, drained or failing count as absent."""
    totals: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < 8:
            continue
        partition, _node, state, cpus_state, gres, gres_used, alloc_mem, memory = (f.strip() for f in fields[:8])
        partition = partition.rstrip("*")
        total = totals.setdefault(partition, dict.fromkeys(
            ("nodes", "idle_nodes", "idle_cpus", "cpus", "free_memory_mib", "free_gpus", "gpus"), 0))
        if any(word in state.lower() for word in _UNUSABLE):
            continue
        try:
            _alloc, idle, _other, all_cpus = (int(n) for n in cpus_state.split("/"))
            free_memory = max(int(memory) - int(alloc_mem or 0), 0)
        except ValueError:
            continue
        gpus = _gpus(gres)
        total["nodes"] += 1
        total["idle_nodes"] += state.rstrip("*~#!%$@^-").lower() == "idle"
        total["idle_cpus"] += idle
        total["cpus"] += all_cpus
        total["free_memory_mib"] += free_memory
        total["gpus"] += gpus
        total["free_gpus"] += max(gpus - _gpus(gres_used), 0)
    return {name: PartitionState(name=name, **values) for name, values in totals.items()}


def allocation_uses(site: Site, accounts: tuple[str, ...], sacct_text: str, since: datetime,
                    until: datetime) -> dict[str, AllocationUse]:
    """Usage per account (all users) from `sacct` text, next to the allocation the site gives the project."""
    used: dict[str, list[float]] = {account: [0.0, 0.0] for account in accounts}
    for row in summarize(parse_sacct(sacct_text, since, until)):
        if row.project in used:
            used[row.project][0] += row.core_hours
            used[row.project][1] += row.gpu_hours
    projects = {p.name: p for p in site.projects}
    return {
        account: AllocationUse(account, cpu, gpu,
                               getattr(projects.get(account), "cpu_hours", None),
                               getattr(projects.get(account), "gpu_hours", None))
        for account, (cpu, gpu) in used.items()
    }


# -- I/O: cached hub-wide --------------------------------------------------------
_CACHE: dict[object, tuple[float, object]] = {}
_LOCKS: dict[object, asyncio.Lock] = {}


async def cached(key: object, seconds: float, fetch: Callable[[], Awaitable[object]]) -> object:
    """`fetch()` at most once per `seconds` per key; concurrent callers share one fetch."""
    lock = _LOCKS.setdefault(key, asyncio.Lock())
    async with lock:
        hit = _CACHE.get(key)
        if hit and time.monotonic() - hit[0] < seconds:
            return hit[1]
        value = await fetch()
        _CACHE[key] = (time.monotonic(), value)
        return value


async def partition_states(timeout: float = 10.0, max_age: float = 5.0) -> dict[str, PartitionState]:
    """Free capacity per partition, at most `max_age` seconds old (raises SchedulerUnavailable)."""
    async def fetch():
        return parse_sinfo(await slurmcli.run(SINFO_ARGV, timeout))
    return await cached("sinfo", max_age, fetch)


async def allocation_use(site: Site, accounts: tuple[str, ...], timeout: float = 20.0, max_age: float = 60.0,
                         days: int = 365) -> dict[str, AllocationUse]:
    """Each account's use over the last `days` days, at most `max_age` seconds old."""
    async def fetch():
        until = datetime.now().replace(microsecond=0)
        since = until - timedelta(days=days)
        text = await slurmcli.run(sacct_argv(since, until, accounts), timeout)
        return allocation_uses(site, accounts, text, since, until)
    return await cached(("sacct", accounts), max_age, fetch)
