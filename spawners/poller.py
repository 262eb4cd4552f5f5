"""One shared view of the hub's Slurm jobs: one `squeue`, by job id, per poll interval for all servers.

Spawners `watch` their job and read its `JobView` from the latest snapshot;
they never run squeue themselves. The poller's loop refreshes every
`interval` seconds (with jitter, and a random first delay so a restarted hub
does not hit the controller at once); a spawner that is starting asks for a
fresh snapshot, and all such requests within `startup_interval` share one
query. The query names the jobs the hub follows (`--jobs=`), so its output is
O(the hub's jobs) whatever else the centre queues; a partition's pending order (the
place shown while a server waits) is asked only while one of them is pending there.
A job that has left the queue is looked up in accounting (one `sacct` for all such
jobs, once: a job with a final state is not asked about again) to learn how it ended.

If squeue does not answer, every job is `unknown`: servers are kept, never
removed. The commands run through the `runner` the poller is given (the spawner's
`SlurmRunner`, local or over ssh); their parsing lives in `aifactory.slurm`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime

from aifactory.slurm.runner import Refused, SlurmError, SlurmRunner
from aifactory.slurm.sacct import parse_sacct, sacct_argv
from aifactory.slurm.squeue import (
    INVALID_JOB_ID, QueueEntry, parse_pending, parse_squeue, pending_argv, pending_positions, queue_seconds,
    squeue_argv,
)
from aifactory.slurm.states import FINAL_STATES, LIVE_STATES, PENDING_STATES, RUNNING_STATES, state_name

log = logging.getLogger("aifactory.spawners.poller")


@dataclass(frozen=True)
class JobView:
    """What the hub knows about one job: kind is pending, running, gone or unknown."""

    kind: str
    job_id: str
    state: str = ""
    reason: str = ""
    node: str = ""
    partition: str = ""
    start_estimate: datetime | None = None
    position: int | None = None
    pending_total: int | None = None
    queue_seconds: float | None = None  # running jobs: from submission to start, as Slurm recorded them
    started: datetime | None = None  # running jobs: their start (Slurm's local time), for the time they end
    exit_code: str = ""  # gone FAILED jobs: accounting's 'exit:signal' (the launcher's code says why it stopped)


@dataclass
class _Watched:
    since: float  # monotonic time the job was submitted (0: reattached)
    missing_rounds: int = 0
    final: str = ""


@dataclass
class SlurmPoller:
    interval: float = 30.0
    startup_interval: float = 0.5
    jitter: float = 0.1
    timeout: float = 20.0
    missing_rounds: int = 5  # polls a job may be in neither squeue nor sacct before it counts as gone
    runner: SlurmRunner = field(default_factory=SlurmRunner)  # or any object with `async run(argv, timeout=)`
    log: logging.Logger = log
    scheduler_calls: int = 0
    _watched: dict[str, _Watched] = field(default_factory=dict)
    _to_cancel: set[str] = field(default_factory=set)
    _views: dict[str, JobView] = field(default_factory=dict)
    _snapshot_started: float = -1.0
    _updated: asyncio.Condition | None = None
    _urgent: asyncio.Event | None = None
    _task: asyncio.Task | None = None

    # -- spawners' side ------------------------------------------------------
    def watch(self, job_id: str, submitted: bool = True) -> None:
        """Follow `job_id`; `submitted=False` for a job reattached after a hub restart."""
        if job_id not in self._watched:
            self._watched[job_id] = _Watched(since=time.monotonic() if submitted else 0.0)
        self._ensure_loop()

    def unwatch(self, job_id: str) -> None:
        self._watched.pop(job_id, None)
        self._views.pop(job_id, None)

    def cancel_later(self, job_id: str) -> None:
        """A job whose scancel got no answer: retried after each successful squeue until Slurm takes it."""
        self._to_cancel.add(job_id)
        self._ensure_loop()

    @property
    def has_snapshot(self) -> bool:
        """Whether any query has completed since the hub started."""
        return self._snapshot_started >= 0

    def view(self, job_id: str) -> JobView:
        """The latest known state, without waiting (unknown before the first snapshot)."""
        return self._views.get(job_id, JobView("unknown", job_id))

    async def fresh_view(self, job_id: str, wait: float | None = None) -> JobView:
        """The state from a snapshot started after this call (shared with other callers)."""
        asked = time.monotonic()
        self._ensure_loop()
        assert self._updated is not None and self._urgent is not None
        self._urgent.set()
        try:
            async with self._updated:
                await asyncio.wait_for(self._updated.wait_for(lambda: self._snapshot_started >= asked),
                                       wait if wait is not None else self.timeout * 2 + self.startup_interval + 1)
        except asyncio.TimeoutError:
            return JobView("unknown", job_id)
        return self.view(job_id)

    # -- the loop ------------------------------------------------------------
    def _ensure_loop(self) -> None:
        if self._task is None or self._task.done():
            self._updated = asyncio.Condition()
            self._urgent = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        assert self._urgent is not None
        # A restarted hub spreads its first query unless a spawner asks for one.
        wait = random.uniform(0, self.interval * self.jitter)
        round_start = time.monotonic()
        last_query = -1e9
        while True:
            try:
                await asyncio.wait_for(self._urgent.wait(), max(0.0, wait - (time.monotonic() - round_start)))
            except asyncio.TimeoutError:
                pass
            # Coalesce: at most one query per startup_interval however many spawners ask.
            gap = self.startup_interval - (time.monotonic() - last_query)
            if gap > 0:
                await asyncio.sleep(gap)
            self._urgent.clear()
            last_query = round_start = time.monotonic()
            wait = self.interval * (1 + random.uniform(-self.jitter, self.jitter))
            try:
                await self.refresh()
            except Exception:  # never let the loop die; the next round retries
                self.log.exception("Slurm poll failed")

    async def refresh(self) -> None:
        """One snapshot: one squeue by the ids of the jobs the hub follows (never the whole queue), the
        pending order of a partition only while one of them waits there, one sacct for those that left."""
        started = time.monotonic()
        ids = sorted({job_id for job_id, watched in self._watched.items() if not watched.final} | self._to_cancel)
        if not ids:
            await self._publish(started)
            return
        try:
            jobs = await self._queue(ids)
        except SlurmError as error:
            self.log.warning("squeue did not answer (%s): keeping every server as it is", error)
            for job_id in self._watched:
                if not self._watched[job_id].final:
                    self._views[job_id] = JobView("unknown", job_id, reason=str(error))
            await self._publish(started)
            return
        positions = await self._positions([jobs[i] for i in ids if i in self._watched and i in jobs])
        if self._to_cancel:
            await self._retry_cancels(jobs)
        left = []
        for job_id, watched in self._watched.items():
            entry = jobs.get(job_id)
            if watched.final:
                continue
            if entry is None:
                if watched.since <= started:
                    left.append(job_id)
                continue
            watched.missing_rounds = 0
            if entry.state in PENDING_STATES:
                position, total = positions.get(job_id, (None, None))
                self._views[job_id] = JobView("pending", job_id, entry.state, entry.reason, "", entry.partition,
                                              entry.start, position, total)
            elif entry.state in RUNNING_STATES:
                self._views[job_id] = JobView("running", job_id, entry.state, entry.reason,
                                              entry.nodes.split(",")[0], entry.partition,
                                              queue_seconds=queue_seconds(entry), started=entry.start)
            elif state_name(entry.state) == "FAILED":
                left.append(job_id)  # why it failed (its exit code) is in accounting; squeue's state if not yet
            else:
                self._gone(job_id, state_name(entry.state))
        if left:
            await self._look_up_final(left, {job_id: "FAILED" for job_id in left if job_id in jobs})
        await self._publish(started)

    async def _queue(self, ids: list[str]) -> dict[str, QueueEntry]:
        """The queue's entries of `ids` (one squeue). squeue refuses a single id the controller no longer
        knows (purged after MinJobAge): that job is simply not in the queue; should a list be refused for
        one purged id (a Slurm that checks every id), each id is asked on its own, so one purged job never
        blanks every server."""
        try:
            self.scheduler_calls += 1
            return parse_squeue(await self.runner.run(squeue_argv(job_ids=tuple(ids)), timeout=self.timeout))
        except Refused as error:
            if INVALID_JOB_ID not in error.stderr:
                raise
        if len(ids) == 1:
            return {}
        jobs: dict[str, QueueEntry] = {}
        for job_id in ids:
            jobs.update(await self._queue([job_id]))
        return jobs

    async def _positions(self, entries: list[QueueEntry]) -> dict[str, tuple[int, int]]:
        """{job_id: (place, pending)} in the partitions where one of `entries` is pending; asked (one squeue of
        those partitions' pending jobs, a minimal format) only then. No answer: no places, states unaffected."""
        partitions = sorted({p for e in entries if e.state == "PENDING" for p in e.partition.split(",") if p})
        if not partitions:
            return {}
        try:
            self.scheduler_calls += 1
            queue = parse_pending(await self.runner.run(pending_argv(tuple(partitions)), timeout=self.timeout))
        except SlurmError as error:
            self.log.warning("squeue of the pending jobs did not answer (%s): no places in the queue", error)
            return {}
        return pending_positions(queue)

    async def _look_up_final(self, job_ids: list[str], queued: dict[str, str] | None = None) -> None:
        """Final states (and exit codes) from accounting; `queued`: the final states squeue still shows,
        used as they are when accounting does not know the job yet or does not answer."""
        queued = queued or {}
        try:
            self.scheduler_calls += 1
            records = parse_sacct(await self.runner.run(sacct_argv(job_ids=tuple(job_ids)), timeout=self.timeout))
            states = {record.raw_id: record.state for record in records}
            exit_codes = {record.raw_id: record.exit_code for record in records}
        except SlurmError as error:
            self.log.warning("sacct did not answer (%s): jobs %s stay as they are", error, ",".join(job_ids))
            for job_id, state in queued.items():
                self._gone(job_id, state)
            return
        for job_id in job_ids:
            watched = self._watched.get(job_id)
            if watched is None:
                continue
            if job_id in states and states[job_id] in FINAL_STATES:
                self._gone(job_id, states[job_id], exit_codes.get(job_id, ""))
                continue
            if job_id in queued:
                self._gone(job_id, queued[job_id])
                continue
            watched.missing_rounds += 1
            if watched.missing_rounds >= self.missing_rounds:
                self._gone(job_id, states.get(job_id, "UNKNOWN"))
            else:
                self._views[job_id] = JobView("unknown", job_id, reason="not in the queue, not yet in accounting")

    async def _retry_cancels(self, jobs: dict[str, QueueEntry]) -> None:
        for job_id in sorted(self._to_cancel):
            entry = jobs.get(job_id)
            if entry is not None and entry.state in LIVE_STATES:
                try:
                    self.scheduler_calls += 1
                    await self.runner.run(["scancel", job_id], timeout=self.timeout)
                except SlurmError as error:
                    self.log.warning("scancel %s still failing: %s", job_id, error)
                    continue
            self._to_cancel.discard(job_id)

    def _gone(self, job_id: str, state: str, exit_code: str = "") -> None:
        self._watched[job_id].final = state
        self._views[job_id] = JobView("gone", job_id, state, exit_code=exit_code)

    async def _publish(self, started: float) -> None:
        if self._updated is None:  # refreshed before anything was watched: nobody waits
            self._snapshot_started = started
            return
        async with self._updated:
            self._snapshot_started = started
            self._updated.notify_all()


_shared: dict[int, SlurmPoller] = {}


def shared_poller(runner: SlurmRunner = SlurmRunner(), **settings) -> SlurmPoller:
    """The hub's one poller (per event loop); the first caller's runner and settings win."""
    loop_id = id(asyncio.get_running_loop())
    if loop_id not in _shared:
        _shared[loop_id] = SlurmPoller(runner=runner, **settings)
    return _shared[loop_id]
