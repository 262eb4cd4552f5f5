"""A running job's time limit: read it, read its partition's MaxTime, change it (argv builders and parsers).

The hub extends a server's walltime as a Slurm operator. Slurm (22.05) does not check an operator's
`scontrol update TimeLimit=` against the partition's MaxTime (an update past it is taken; a user may
only lower a limit), so the caller checks MaxTime itself, read live from Slurm here. The job is read
with `squeue --Format` fields only Slurm writes (state, limit, start, CPUs, account, partition,
allocated TRES): never `scontrol show job`, whose free-text fields (a job name the user may change)
could carry a spoofed `TimeLimit=`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from aifactory.site.units import format_walltime, parse_walltime_minutes

from .runner import Failed

JOB_FORMAT = "JobID:0|,State:0|,TimeLimit:0|,StartTime:0|,NumCPUs:0|,Account:0|,Partition:0|,tres-alloc:0|"
_FIELDS = JOB_FORMAT.count("|")
_JOB_ID = re.compile(r"\d+")
_MAX_TIME = re.compile(r"(?:^|\s)MaxTime=(\S+)")


@dataclass(frozen=True)
class JobLimit:
    """One job's state and time limit, with what an extension charges (CPUs, GPUs) and to whom."""

    job_id: str
    state: str  # RUNNING, PENDING, COMPLETING, ...
    limit_minutes: int | None  # None: UNLIMITED (or a limit Slurm could not state)
    start: datetime | None  # the start (Slurm's local time); its estimate while pending
    cpus: int
    gpus: int
    account: str
    partition: str


def job_limit_argv(job_id: str) -> list[str]:
    """squeue of one job (any state) in the fields `parse_job_limit` reads."""
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return ["squeue", "--noheader", f"--jobs={job_id}", "--states=all", f"--Format={JOB_FORMAT}"]


def _minutes(text: str) -> int | None:
    try:
        return parse_walltime_minutes(text)
    except ValueError:
        return None  # UNLIMITED, INVALID, NOT_SET


def _gpus(tres: str) -> int:
    for item in tres.split(","):
        key, _, value = item.partition("=")
        if key == "gres/gpu" and value.isdigit():
            return int(value)
    return 0


def parse_job_limit(text: str, job_id: str) -> JobLimit | None:
    """`job_limit_argv(job_id)`'s stdout -> the job, or None if Slurm no longer lists it; another shape: Failed."""
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.strip().split("|")
        if len(fields) != _FIELDS + 1 or fields[-1] != "" or not fields[4].isdigit():
            raise Failed(f"squeue printed a line that is not {JOB_FORMAT}: {line.strip()[:160]!r}")
        found, state, limit, start, cpus, account, partition, tres = fields[:_FIELDS]
        if found != job_id:
            continue
        try:
            started = datetime.fromisoformat(start)
        except ValueError:
            started = None  # N/A, Unknown
        return JobLimit(found, state, _minutes(limit), started, int(cpus), _gpus(tres), account, partition)
    return None


def partition_argv(partition: str) -> list[str]:
    return ["scontrol", "--oneliner", "show", "partition", partition]


def parse_max_time(text: str) -> int | None:
    """`partition_argv`'s stdout -> the partition's MaxTime in minutes; None if UNLIMITED; Failed if absent."""
    match = _MAX_TIME.search(text)
    if match is None:
        raise Failed(f"scontrol printed no MaxTime for the partition: {text.strip()[:160]!r}")
    return _minutes(match.group(1))


def update_argv(job_id: str, minutes: int) -> list[str]:
    """Set the job's time limit to `minutes` (an operator's command: it may raise the limit)."""
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    if minutes < 1:
        raise ValueError(f"a time limit must be at least a minute, not {minutes}")
    return ["scontrol", "update", f"JobId={job_id}", f"TimeLimit={format_walltime(minutes)}"]


UpdateRefusal = Literal["not_running", "partition_limit", "not_operator", "other"]


def update_refusal(stderr: str) -> UpdateRefusal:
    """What Slurm's refusal of `update_argv` means (its words are in errors.c / slurm_errno.c)."""
    if "has already finished" in stderr or "Invalid job id" in stderr:
        return "not_running"  # ESLURM_ALREADY_DONE, ESLURM_INVALID_JOB_ID
    if "time limit" in stderr.lower() or "MaxTime" in stderr:
        return "partition_limit"  # ESLURM_INVALID_TIME_LIMIT: "Requested time limit is invalid (...)"
    if "Access/permission denied" in stderr:
        return "not_operator"  # ESLURM_ACCESS_DENIED: only an operator may raise a limit
    return "other"
