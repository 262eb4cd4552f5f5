"""Live facts the spawn page shows: free capacity per partition and each project's allocation use.

The parsing and summing are `aifactory.slurm`'s; `partition_states` and `allocation_use`
are the I/O edges (through the spawner's runner), cached hub-wide so that a class opening
the spawn page together costs one `sinfo` per few seconds, not one per student.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Awaitable, Callable

from aifactory.site.schema import Site
from aifactory.slurm.accounting import job_usage, summarize
from aifactory.slurm.runner import SlurmRunner
from aifactory.slurm.sacct import parse_sacct, sacct_argv
from aifactory.slurm.sinfo import SINFO_ARGV, PartitionState, parse_sinfo


@dataclass(frozen=True)
class AllocationUse:
    """Core- and GPU-hours a project has used (from accounting) against its allocation (from the site)."""

    account: str
    cpu_hours_used: float
    gpu_hours_used: float
    cpu_hours: int | None = None
    gpu_hours: int | None = None

    @property
    def cpu_hours_left(self) -> float | None:
        """What is left of the core-hour allocation (negative when overdrawn); None: no allocation."""
        return None if self.cpu_hours is None else self.cpu_hours - self.cpu_hours_used

    @property
    def gpu_hours_left(self) -> float | None:
        """What is left of the GPU-hour allocation (negative when overdrawn); None: no allocation."""
        return None if self.gpu_hours is None else self.gpu_hours - self.gpu_hours_used


def allocation_uses(site: Site, accounts: tuple[str, ...], sacct_text: str, since: datetime,
                    until: datetime) -> dict[str, AllocationUse]:
    """Usage per account (all users) from `sacct` text, next to the allocation the site gives the project."""
    used: dict[str, list[float]] = {account: [0.0, 0.0] for account in accounts}
    for row in summarize(job_usage(parse_sacct(sacct_text), since, until)):
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


async def partition_states(timeout: float | None = None, max_age: float = 5.0,
                           runner: SlurmRunner = SlurmRunner()) -> dict[str, PartitionState]:
    """Free capacity per partition, at most `max_age` seconds old (raises SlurmError)."""
    async def fetch():
        return parse_sinfo(await runner.run(SINFO_ARGV, timeout=timeout))
    return await cached("sinfo", max_age, fetch)


async def allocation_use(site: Site, accounts: tuple[str, ...], timeout: float | None = None, max_age: float = 60.0,
                         days: int = 365, runner: SlurmRunner = SlurmRunner()) -> dict[str, AllocationUse]:
    """Each account's use over the last `days` days, at most `max_age` seconds old (raises SlurmError)."""
    async def fetch():
        until = datetime.now().replace(microsecond=0)
        since = until - timedelta(days=days)
        text = await runner.run(sacct_argv(since=since, until=until, accounts=accounts, all_users=True),
                                timeout=timeout)
        return allocation_uses(site, accounts, text, since, until)
    return await cached(("sacct", accounts), max_age, fetch)


async def hours_left(site: Site, account: str, timeout: float | None = None, max_age: float = 60.0,
                     runner: SlurmRunner = SlurmRunner()) -> tuple[float | None, float | None]:
    """(core-hours, GPU-hours) left of `account`'s allocation, as the spawn page counts them; None where the
    site gives no such allocation (then accounting is not asked). Raises SlurmError. The one place a walltime
    extension learns what is left."""
    project = next((p for p in site.projects if p.name == account), None)
    if project is None or (project.cpu_hours is None and project.gpu_hours is None):
        return None, None
    use = (await allocation_use(site, (account,), timeout=timeout, max_age=max_age, runner=runner))[account]
    return use.cpu_hours_left, use.gpu_hours_left
