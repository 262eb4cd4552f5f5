"""Core-hours and GPU-hours from accounting records, clipped to a window: pure functions.

`aifactory usage` (per project and user) and the spawn page (each project's use against its
allocation) sum the same `sacct` records the same way.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from .sacct import AccountingRecord

GPU_TRES = "gres/gpu"


@dataclass(frozen=True)
class JobUsage:
    job_id: str
    project: str
    user: str
    cpus: int
    gpus: int
    seconds: float

    @property
    def core_hours(self) -> float:
        return self.cpus * self.seconds / 3600

    @property
    def gpu_hours(self) -> float:
        return self.gpus * self.seconds / 3600


@dataclass(frozen=True)
class UsageRow:
    project: str
    user: str
    core_hours: float
    gpu_hours: float


def job_usage(records: list[AccountingRecord], since: datetime, until: datetime) -> list[JobUsage]:
    """The usage of each job inside [since, until]: a job across `since` counts only its part inside,
    a running one up to `until`, one that never ran (nothing allocated) not at all."""
    jobs = []
    for record in records:
        if record.start is None or not record.tres:
            continue
        seconds = (min(record.end or until, until) - max(record.start, since)).total_seconds()
        if seconds <= 0:
            continue
        jobs.append(JobUsage(record.raw_id, record.account, record.user, int(record.tres.get("cpu", 0)),
                             int(record.tres.get(GPU_TRES, 0)), seconds))
    return jobs


def summarize(jobs: list[JobUsage]) -> list[UsageRow]:
    """Sum per (project, user), sorted by project then user."""
    sums: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for job in jobs:
        total = sums[job.project, job.user]
        total[0] += job.core_hours
        total[1] += job.gpu_hours
    return [UsageRow(p, u, c, g) for (p, u), (c, g) in sorted(sums.items())]
