"""Finishing a start that the previous hub process left pending: same job, same token, same deadline.

A hub killed while a server's job was queued (or running without a reported port) finds the job
in the spawner's saved state. JupyterHub's startup check polls each server once after a restart;
the spawner's `poll` hands such a server here. While the job waits, the server shows as a
pending spawn, so the progress page follows it and a stop cancels it (both through
`jupyterhub_internals`); once the server reports its port the startup check goes on, takes the
address from `get_url` and verifies it, and the server is routed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from tornado import web

from . import metrics
from .jupyterhub_internals import internals

if TYPE_CHECKING:
    from .slurm import SiteSlurmSpawner

STOP_GRACE_SECONDS = 5  # the stop that cancelled a resumed start runs first, so the check finds no server


async def resume_start(spawner: SiteSlurmSpawner) -> int | None:
    """The startup check's answer: None once the server runs; 1 if the job ended, timed out or was stopped."""
    spawner.failure = ""
    job_id = spawner.job.job_id
    spawner.begin_attempt((f"The hub restarted; following your Slurm job {job_id} again", 20))
    spawner.log.info("%s: resuming the start of Slurm job %s after a hub restart", spawner.who, job_id)
    up = asyncio.ensure_future(_up_within_deadline(spawner))
    hub = internals(spawner)
    hub.follow_resumed_start(asyncio.ensure_future(_ready_and_routed(spawner, up)))
    await asyncio.wait([up])
    if not up.cancelled() and up.exception() is None:
        hub.hand_to_startup_check()
        return None
    metrics.spawn_failed("cancelled" if up.cancelled() else spawner.failure or "other")
    spawner.log.warning("%s: %s", spawner.who, "start cancelled" if up.cancelled() else spawner.job.stop_reason)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while spawner.server is not None and (spawner.pending == "stop" or time.monotonic() < deadline):
        await asyncio.sleep(0.2)
    return 1


async def _up_within_deadline(spawner: SiteSlurmSpawner):
    """The wait for the server, bounded by start_timeout counted from the job's submission."""
    job_id, submitted_at = spawner.job.job_id, spawner.job.submitted_at
    left = submitted_at + spawner.start_timeout - time.time()
    try:
        up = await asyncio.wait_for(spawner.wait_until_up(), max(left, 1.0) if submitted_at else None)
    except asyncio.TimeoutError:
        spawner.job = replace(spawner.job, stop_reason=f"Your server (Slurm job {job_id}) did not start in time")
        spawner.failure = "timeout"
        await spawner.cancel(job_id)
        raise web.HTTPError(500, spawner.job.stop_reason) from None
    internals(spawner).save()  # the node and port (JupyterHub saves a start's state, not a startup check's)
    return up


async def _ready_and_routed(spawner: SiteSlurmSpawner, up: asyncio.Future) -> None:
    """The resumed start as JupyterHub's spawn future: done when the server is ready and routed."""
    await up
    deadline = time.monotonic() + spawner.http_timeout + 60
    while not spawner.ready:
        if spawner.server is None or time.monotonic() > deadline:
            raise web.HTTPError(500, "the resumed server did not answer")
        await asyncio.sleep(0.5)
    await internals(spawner).route()
    spawner.log.info("%s: resumed server ready and routed at %s", spawner.who, spawner.proxy_spec)
