"""`squeue`: the jobs in the queue, one argv builder and one parser for every caller.

One format with every field a caller reads (the hub's poller: state, reason, node, start
estimate, partition, priority, submit time; the Dask widget: its user's jobs; grading: the
tasks of its job array), so that no two parts read the queue differently. The hub's poller
asks by job id (`squeue_argv(job_ids=...)`); a partition's pending order, the only thing it
needs of other people's jobs, comes from `pending_argv`'s minimal listing, only while one of
its jobs waits there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .runner import Failed

FORMAT = "%i|%K|%T|%r|%N|%S|%P|%Q|%V|%u"
PENDING_FORMAT = "%i|%P|%Q|%V"  # what a place in the queue needs: id, partition, priority, submit time
# squeue's stderr (exit 1) when the one job id it was given has left the controller (purged after MinJobAge).
INVALID_JOB_ID = "Invalid job id specified"


@dataclass(frozen=True)
class QueueEntry:
    """One job (or one task of an array) as squeue lists it."""

    job_id: str  # '702', or '707_1' for a task of an array
    state: str  # PENDING, RUNNING, ... (see states.py)
    reason: str = ""  # why it is pending; '' when Slurm gives none
    nodes: str = ""
    start: datetime | None = None  # the start, or Slurm's estimate of it while pending
    partition: str = ""
    priority: int = 0
    submitted: datetime | None = None
    user: str = ""
    array_index: int | None = None  # the task's index in its array


def squeue_argv(*, users: tuple[str, ...] = (), job_ids: tuple[str, ...] = (),
                partitions: tuple[str, ...] = ()) -> list[str]:
    """Every job in any state (and each task of an array on its own line), narrowed as asked."""
    return [
        "squeue", "--noheader", "--all", "--array", "--states=all", f"--format={FORMAT}",
        *([f"--user={','.join(users)}"] if users else []),
        *([f"--jobs={','.join(job_ids)}"] if job_ids else []),
        *([f"--partition={','.join(partitions)}"] if partitions else []),
    ]


def pending_argv(partitions: tuple[str, ...]) -> list[str]:
    """Every pending job (each task of an array on its own line) of `partitions`, in `PENDING_FORMAT`."""
    return ["squeue", "--noheader", "--all", "--array", "--states=PENDING", f"--format={PENDING_FORMAT}",
            f"--partition={','.join(partitions)}"]


def _time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None  # N/A, Unknown, None


def _rows(text: str, format: str) -> list[list[str]]:
    """Each non-empty line of squeue's `--format=format` output as its fields; a line of another shape raises Failed."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.strip().split("|")
        if len(fields) != format.count("|") + 1 or not fields[0]:
            raise Failed(f"squeue printed a line that is not {format}: {line.strip()[:120]!r}")
        rows.append(fields)
    return rows


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def parse_squeue(text: str) -> dict[str, QueueEntry]:
    """Output of `squeue_argv(...)` -> {job_id: entry}; a line of another shape raises Failed."""
    jobs = {}
    for job_id, index, state, reason, nodes, start, partition, priority, submitted, user in _rows(text, FORMAT):
        jobs[job_id] = QueueEntry(
            job_id, state, "" if reason == "None" else reason, nodes, _time(start), partition,
            _int(priority), _time(submitted), user, int(index) if index.isdigit() else None,
        )
    return jobs


def parse_pending(text: str) -> dict[str, QueueEntry]:
    """Output of `pending_argv(...)` -> {job_id: entry} (state PENDING); a line of another shape raises Failed."""
    return {job_id: QueueEntry(job_id, "PENDING", partition=partition, priority=_int(priority),
                               submitted=_time(submitted))
            for job_id, partition, priority, submitted in _rows(text, PENDING_FORMAT)}


def pending_positions(jobs: dict[str, QueueEntry]) -> dict[str, tuple[int, int]]:
    """{job_id: (position, pending in its partition)} in Slurm's order: priority, then submit time."""
    by_partition: dict[str, list[QueueEntry]] = {}
    for job in jobs.values():
        if job.state == "PENDING":
            for partition in job.partition.split(","):
                by_partition.setdefault(partition, []).append(job)
    positions = {}
    for queue in by_partition.values():
        queue.sort(key=lambda j: (-j.priority, j.submitted or datetime.max, int(j.job_id.split("_")[0] or 0)))
        for index, job in enumerate(queue, 1):
            if job.job_id not in positions:
                positions[job.job_id] = (index, len(queue))
    return positions


def queue_seconds(entry: QueueEntry) -> float | None:
    """Seconds a started job waited: its start time minus its submit time."""
    if entry.start is None or entry.submitted is None:
        return None
    return max(0.0, (entry.start - entry.submitted).total_seconds())
