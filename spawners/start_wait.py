"""Waiting for a submitted server: queued, then running on a node, then its port reported.

The spawner's start (and a start resumed after a hub restart) waits here. Each check reads
the hub's shared poller, never squeue directly; the server's port report wakes the wait at
once. A job that leaves the queue ends the wait with `JobEnded` and Slurm's final state.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from .poller import JobView, SlurmPoller
from .progress import pending_message
from .start_log import StartLog

NO_ANSWER_STEP = "Waiting for Slurm to answer (the controller is busy or restarting)"


class JobEnded(Exception):
    """The job left the queue before its server reported a port; `state` is how it ended."""

    def __init__(self, state: str):
        super().__init__(state)
        self.state = state


async def _woken(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except asyncio.TimeoutError:
        pass


async def until_running(poller: SlurmPoller, job_id: str, port_reported: asyncio.Event, interval: float,
                        log: StartLog) -> JobView:
    """The job's view once it runs; pending reasons and Slurm's silences go to `log` meanwhile."""
    while True:
        view = await poller.fresh_view(job_id)
        if view.kind == "running":
            return view
        if view.kind == "gone":
            raise JobEnded(view.state)
        if view.kind == "pending":
            log.step(pending_message(view.reason, view.position, view.pending_total, view.partition,
                                     view.start_estimate, datetime.now()), 30)
        else:
            log.step(NO_ANSWER_STEP, 30)
        await _woken(port_reported, interval)  # the next shared snapshot, or the server's port report


async def until_port(poller: SlurmPoller, job_id: str, port_reported: asyncio.Event, interval: float) -> None:
    """Return once the server reported its port; raise JobEnded if the job ends first."""
    while not port_reported.is_set():
        await _woken(port_reported, max(2.0, interval))
        if not port_reported.is_set() and (view := await poller.fresh_view(job_id)).kind == "gone":
            raise JobEnded(view.state)
