"""Live facts the spawn page shows: free capacity per partition and each project's allocation use.

The parsing and summing are `aifactory.slurm`'s; `partition_states` and `allocation_use`
are the I/O edges (through the spawner's runner), cached hub-wide so that a class opening
the spawn page together costs one `sinfo` per few seconds, not one per student.

Allocation use is what Slurm charges the allocation it enforces (GrpTRESMins in the
association manager: one cheap call, whatever the size of accounting); only where Slurm
tracks no usage (priority/basic) is it summed from a year of accounting instead.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Awaitable, Callable

from aifactory.site.schema import Site
from aifactory.slurm.accounting import GPU_TRES, job_usage, summarize
from aifactory.slurm.assoc import CONFIG_ARGV, assoc_mgr_argv, parse_assoc_mgr, usage_tracked
from aifactory.slurm.runner import SlurmError, SlurmRunner
from aifactory.slurm.sacct import parse_sacct, sacct_argv
from aifactory.slurm.sinfo import SINFO_ARGV, PartitionState, parse_sinfo


@dataclass(frozen=True)
class AllocationUse:
    """Core- and GPU-hours a project has used (as Slurm charges them) against its allocation (from the site,
    which the local cluster writes into Slurm's GrpTRESMins)."""

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


def against_allocations(site: Site, used: dict[str, tuple[float, float]]) -> dict[str, AllocationUse]:
    """{account: (core-hours, GPU-hours) used} next to the allocation the site gives each project."""
    projects = {p.name: p for p in site.projects}
    return {account: AllocationUse(account, cpu, gpu, getattr(projects.get(account), "cpu_hours", None),
                                   getattr(projects.get(account), "gpu_hours", None))
            for account, (cpu, gpu) in used.items()}


def allocation_uses(site: Site, accounts: tuple[str, ...], sacct_text: str, since: datetime,
                    until: datetime) -> dict[str, AllocationUse]:
    """Usage per account (all users) from `sacct` text, next to the allocation the site gives the project."""
    used: dict[str, list[float]] = {account: [0.0, 0.0] for account in accounts}
    for row in summarize(job_usage(parse_sacct(sacct_text), since, until)):
        if row.project in used:
            used[row.project][0] += row.core_hours
            used[row.project][1] += row.gpu_hours
    return against_allocations(site, {account: (cpu, gpu) for account, (cpu, gpu) in used.items()})


def enforced_uses(site: Site, accounts: tuple[str, ...], assoc_text: str) -> dict[str, AllocationUse]:
    """Usage per account from the association manager's GrpTRESMins (`scontrol show assoc_mgr` text), next to
    the allocation the site gives the project; an account Slurm does not know has used nothing."""
    usage = parse_assoc_mgr(assoc_text)
    minutes = {account: usage.get(account, {}) for account in accounts}
    return against_allocations(site, {account: (tres.get("cpu", (None, 0))[1] / 60,
                                                tres.get(GPU_TRES, (None, 0))[1] / 60)
                                      for account, tres in minutes.items()})


# -- I/O: cached hub-wide --------------------------------------------------------
_CACHE: dict[object, tuple[float, object]] = {}
_LOCKS: dict[object, asyncio.Lock] = {}


FAILURE_SECONDS = 5.0


@dataclass(frozen=True)
class _Failed:
    error: SlurmError


async def cached(key: object, seconds: float, fetch: Callable[[], Awaitable[object]]) -> object:
    """`fetch()` at most once per `seconds` per key; concurrent callers share one fetch, and its SlurmError for
    at most FAILURE_SECONDS: a Slurm that does not answer costs the users waiting on it one timeout, not one each."""
    lock = _LOCKS.setdefault(key, asyncio.Lock())
    async with lock:
        hit = _CACHE.get(key)
        if hit:
            age, value = time.monotonic() - hit[0], hit[1]
            if isinstance(value, _Failed) and age < min(seconds, FAILURE_SECONDS):
                raise value.error
            if not isinstance(value, _Failed) and age < seconds:
                return value
        try:
            value = await fetch()
        except SlurmError as error:
            _CACHE[key] = (time.monotonic(), _Failed(error))
            raise
        _CACHE[key] = (time.monotonic(), value)
        return value


async def partition_states(timeout: float | None = None, max_age: float = 5.0,
                           runner: SlurmRunner = SlurmRunner()) -> dict[str, PartitionState]:
    """Free capacity per partition, at most `max_age` seconds old (raises SlurmError)."""
    async def fetch():
        return parse_sinfo(await runner.run(SINFO_ARGV, timeout=timeout))
    return await cached("sinfo", max_age, fetch)


async def tracks_usage(timeout: float | None = None, runner: SlurmRunner = SlurmRunner()) -> bool:
    """Whether Slurm tracks usage (priority/multifactor), asked once an hour; False (and asked again next
    time) when `scontrol show config` does not answer."""
    async def fetch():
        return usage_tracked(await runner.run(CONFIG_ARGV, timeout=timeout))
    try:
        return bool(await cached("usage_tracked", 3600.0, fetch))
    except SlurmError:
        return False


async def allocation_use(site: Site, accounts: tuple[str, ...], timeout: float | None = None, max_age: float = 60.0,
                         days: int = 365, runner: SlurmRunner = SlurmRunner()) -> dict[str, AllocationUse]:
    """Each account's use, at most `max_age` seconds old (raises SlurmError): what the association manager
    charges; where Slurm tracks no usage, summed from accounting over the last `days` days."""
    async def fetch():
        if await tracks_usage(timeout, runner):
            return enforced_uses(site, accounts, await runner.run(assoc_mgr_argv(accounts), timeout=timeout))
        until = datetime.now().replace(microsecond=0)
        since = until - timedelta(days=days)
        text = await runner.run(sacct_argv(since=since, until=until, accounts=accounts, all_users=True),
                                timeout=timeout)
        return allocation_uses(site, accounts, text, since, until)
    return await cached(("allocation", accounts), max_age, fetch)


async def hours_left(site: Site, account: str, timeout: float | None = None, max_age: float = 60.0,
                     runner: SlurmRunner = SlurmRunner()) -> tuple[float | None, float | None]:
    """(core-hours, GPU-hours) left of `account`'s allocation, as the spawn page counts them; None where the
    site gives no such allocation (then Slurm is not asked). Raises SlurmError. The one place a walltime
    extension learns what is left."""
    project = next((p for p in site.projects if p.name == account), None)
    if project is None or (project.cpu_hours is None and project.gpu_hours is None):
        return None, None
    use = (await allocation_use(site, (account,), timeout=timeout, max_age=max_age, runner=runner))[account]
    return use.cpu_hours_left, use.gpu_hours_left
